"""Wall time of a workflow target from its jobs' Snakemake benchmark files (run on demand).

Lists every job `target` needs under the given config (`snakemake -n --forceall`),
reads each job's benchmark TSV (column `s`, wall seconds; `cpu_time` too) from a run
directory where the workflow already ran, and writes per-rule sums. With `--cores 2`
and 2-thread jobs Snakemake runs one job at a time, so the sum of the jobs' wall times
is the target's wall time on these machines (lightweight 1-thread jobs may overlap, so
it is an upper bound). Jobs without a benchmark file (not run yet) are counted and
listed, never guessed.

    python bench/workflow_time.py RUN_DIR [TARGET] [--configfile extra.yaml ...]

Writes bench/out/workflow_time_<target>.csv (one row per rule) and prints the totals.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd


def planned_benchmarks(run_dir: Path, target: str, extra: list[str]) -> pd.DataFrame:
    """(rule, benchmark path) of every job `target` needs, as if nothing existed yet."""
    command = [sys.executable, "-m", "snakemake", "-n", "--forceall", "--cores", "2", target]
    command += extra
    result = subprocess.run(command, cwd=run_dir, capture_output=True, text=True, check=True)
    rows, rule = [], None
    for line in result.stdout.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            rule = m.group(1)
        elif m := re.match(r"^\s+benchmark: (\S+)", line):
            rows.append({"rule": rule, "benchmark": m.group(1)})
    return pd.DataFrame(rows)


def main(argv: list[str]) -> None:
    run_dir = Path(argv[0]).resolve()
    rest = argv[1:]
    target = rest.pop(0) if rest and not rest[0].startswith("-") else "all"
    jobs = planned_benchmarks(run_dir, target, rest)
    wall, cpu = [], []
    for path in jobs["benchmark"]:
        file = run_dir / path
        if file.exists():
            frame = pd.read_csv(file, sep="\t")
            wall.append(float(frame["s"].iloc[-1]))
            cpu.append(float(frame["cpu_time"].iloc[-1]))
        else:
            wall.append(float("nan"))
            cpu.append(float("nan"))
    jobs = jobs.assign(wall_s=wall, cpu_s=cpu)
    per_rule = (
        jobs.groupby("rule")
        .agg(
            jobs=("rule", "size"),
            measured=("wall_s", "count"),
            wall_s=("wall_s", "sum"),
            cpu_s=("cpu_s", "sum"),
        )  # fmt: skip
        .sort_values("wall_s", ascending=False)
    )
    # A file target (figures/table1.pdf) names the output file without its folders.
    out = Path(__file__).parent / "out" / f"workflow_time_{target.replace('/', '_')}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    per_rule.to_csv(out)
    print(per_rule.to_string())
    missing = jobs[jobs["wall_s"].isna()]
    print(
        f"\n{target}: {len(jobs)} jobs, {len(jobs) - len(missing)} measured; "
        f"sum of wall times {per_rule['wall_s'].sum() / 3600:.2f} h, "
        f"CPU {per_rule['cpu_s'].sum() / 3600:.2f} h; not yet run: {len(missing)} "
        f"({', '.join(sorted(set(missing['rule'])))})\nwritten: {out}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
