"""Per-rule runtimes from Snakemake's `benchmark:` files, for the report.

Each job writes a TSV (`s`: wall seconds, `max_rss`: peak resident MB, `cpu_time`, ...).
The rule a file belongs to is found by matching its path against each rule's benchmark
pattern, so the table names rules exactly, whatever their directory layout.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from snakemake.io import regex_from_filepattern

from saesanity.plots.style import STYLE, save_figure

RUNTIME_COLUMNS = ["rule", "jobs", "total_s", "mean_s", "max_s", "max_rss_mb", "cpu_time_s"]


def collect_benchmarks(patterns: dict[str, str], root: str | Path = ".") -> pd.DataFrame:
    """One row per benchmark file under `root` that matches a rule's pattern: rule, file,
    wall seconds, peak RSS (MB) and CPU seconds of the job's last recorded repeat."""
    root = Path(root)
    matchers = {rule: re.compile(regex_from_filepattern(p)) for rule, p in patterns.items()}
    rows = []
    for path in sorted(root.glob("benchmarks/**/*.tsv")):
        relative = path.relative_to(root).as_posix()
        rules = [rule for rule, matcher in matchers.items() if matcher.match(relative)]
        if not rules:
            continue  # a file of a rule that no longer exists
        bench = pd.read_csv(path, sep="\t")
        if bench.empty:
            continue
        last = bench.iloc[-1]
        rows.append(
            {
                "rule": rules[0],
                "file": relative,
                "s": float(last["s"]),
                "max_rss_mb": pd.to_numeric(last.get("max_rss"), errors="coerce"),
                "cpu_time_s": pd.to_numeric(last.get("cpu_time"), errors="coerce"),
            }
        )
    return pd.DataFrame(rows, columns=["rule", "file", "s", "max_rss_mb", "cpu_time_s"])


def runtime_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule: job count, total / mean / longest wall seconds, peak RSS and CPU seconds,
    longest total first."""
    if jobs.empty:
        return pd.DataFrame(columns=RUNTIME_COLUMNS)
    grouped = jobs.groupby("rule")
    table = pd.DataFrame(
        {
            "jobs": grouped.size(),
            "total_s": grouped["s"].sum(),
            "mean_s": grouped["s"].mean(),
            "max_s": grouped["s"].max(),
            "max_rss_mb": grouped["max_rss_mb"].max(),
            "cpu_time_s": grouped["cpu_time_s"].sum(),
        }
    ).reset_index()
    return table.sort_values(["total_s", "rule"], ascending=[False, True]).reset_index(drop=True)


def figure_runtimes(table: pd.DataFrame, out_path: str | Path) -> Figure:
    """Total wall time per rule (bars, log scale) with the job count on each bar."""
    with plt.rc_context(STYLE):
        height = max(2.0, 0.25 * len(table) + 1.0)
        fig, ax = plt.subplots(figsize=(6.5, height), layout="constrained")
        ordered = table.iloc[::-1]
        ax.barh(ordered["rule"], ordered["total_s"].clip(lower=0.01), color="#0072B2")
        for y, (total, jobs) in enumerate(zip(ordered["total_s"], ordered["jobs"], strict=True)):
            ax.text(
                total, y, f" {int(jobs)} job{'s' if jobs != 1 else ''}", va="center", fontsize=7
            )
        ax.set_xscale("log")
        ax.set_xlabel("total wall time over the rule's jobs (s, benchmark files)")
        ax.set_title("Runtime per rule")
        ax.grid(axis="y", visible=False)
    save_figure(fig, out_path)
    return fig
