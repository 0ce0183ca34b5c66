"""Running on a cluster: the SLURM profile on a real one-node SLURM cluster, the conda
environments against pyproject.toml, provenance columns, and resuming a killed run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
import tomllib
import yaml
from packaging.specifiers import SpecifierSet

from saesanity import provenance

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
SMOKE = ("config.yaml", "config/smoke.yaml")


def snakemake_command(workdir: Path, *args: str, configs=SMOKE) -> list[str]:
    return [
        *SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", *[c if Path(c).is_absolute() else str(REPO / c) for c in configs],
        *args,
    ]  # fmt: skip


def write_override(path: Path, override: dict) -> str:
    path.write_text(yaml.safe_dump(override))
    return str(path)


# A real grid small enough for a test, still with table 1's "best frozen - trained" row:
# TopK trained and with a frozen decoder at the smoke L0.
SMALL_REAL_GRID = {
    "real": {
        "enabled_runs": ["topk_pair"],
        "runs": {
            "topk_pair": {
                "architectures": ["topk"],
                "variants": {"trained": ["iso"], "frozen_decoder": ["cov"]},
                "l0s": [8],
                "seeds": [0],
            }
        },
    }
}


# ---------------------------------------------------------------------------- SLURM
@pytest.fixture(scope="module")
def slurm_cluster():
    """A one-node SLURM cluster on loopback; its daemons are stopped by pid afterwards.
    Fails (never skips) when SLURM cannot be installed: CI must run this test."""
    from slurm_cluster import OneNodeCluster, install_slurm

    try:
        install_slurm()
    except RuntimeError as error:
        pytest.fail(f"could not install SLURM from Debian's packages: {error}")
    # munged runs as the munge user and must reach its socket: not under pytest's
    # root-only tmp directory.
    root = Path(tempfile.mkdtemp(prefix="saesanity-slurm-"))
    os.chmod(root, 0o755)
    # MinJobAge 1 h: squeue still lists every finished job when the test inspects them.
    cluster = OneNodeCluster(root, cpus=os.cpu_count() or 2, memory_mb=8000, min_job_age_s=3600)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_slurm_profile_runs_the_smoke_table_through_slurm(
    slurm_cluster, embedded_model_dir, tmp_path
):
    workdir = tmp_path / "work"
    shutil.copytree(embedded_model_dir, workdir / "resources" / "model")
    override = write_override(tmp_path / "small_grid.yaml", SMALL_REAL_GRID)
    command = snakemake_command(
        workdir,
        "--profile", str(REPO / "profiles/slurm"),
        # The test cluster has no accounts and answers at once: shorter waits than a
        # real cluster's (MinJobAge 300 s >= 3 x 5 s keeps squeue reliable).
        "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "5",
        "--seconds-between-status-checks", "2", "--latency-wait", "5",
        "results/real/table1.csv",
        configs=(*SMOKE, override),
    )  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=workdir, env=slurm_cluster.env, timeout=1500
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:] + slurm_cluster.logs()
    table = pd.read_csv(workdir / "results/real/table1.csv")
    assert set(table["variant"]) == {"trained", "frozen_decoder", "best frozen - trained (%)"}
    assert table["explained_variance_mean"].notna().all()

    # Every job went through SLURM: Snakemake names a SLURM job id per submitted job,
    # slurmctld ran each of them, and they completed on the node.
    submitted = set(re.findall(r"SLURM jobid (\d+)", output))
    finished = set(
        re.findall(r"JobId=(\d+) done", (slurm_cluster.root / "slurmctld.log").read_text())
    )
    job_count = int(re.search(r"(\d+) of (\d+) steps \(100%\) done", output).group(2))
    assert len(submitted) == job_count and submitted <= finished, output[-3000:]
    # Each job asked SLURM for its rule's threads, memory and runtime (config/smoke.yaml
    # `threads` and `resources`); the comment names the rule.
    queue = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i|%T|%C|%m|%l|%k"], env=slurm_cluster.env,
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    jobs = {fields[0]: fields[1:] for fields in (line.split("|") for line in queue.splitlines())}
    assert all(jobs[job][0] == "COMPLETED" for job in submitted), queue
    smoke = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    trainings = [job for job in jobs.values() if "real_train" in job[4]]
    assert len(trainings) == 2, queue
    for _, cpus, memory, time_limit, _ in trainings:
        assert int(cpus) == smoke["threads"]["train"]
        assert memory == f"{smoke['resources']['train']['mem_mb']}M"
        assert time_limit == f"{smoke['resources']['train']['runtime']}:00"


# ---------------------------------------------------------------------- environments
CONDA_TO_PIP = {"pytorch": "torch"}


def canonical(name: str) -> str:
    name = re.sub(r"[-_.]+", "-", name).lower()
    return CONDA_TO_PIP.get(name, name)


def split_requirement(text: str) -> tuple[str, SpecifierSet]:
    """'name>=1,<2' (pip or conda spelling, markers dropped) -> (canonical name, specifier)."""
    text = text.split(";")[0].strip()
    name, spec = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", text).groups()
    return canonical(name), SpecifierSet(spec.replace(" ", ""))


def conda_requirements(path: Path) -> dict[str, SpecifierSet]:
    environment = yaml.safe_load(path.read_text())
    entries = []
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):  # the pip section
            entries += [e for e in entry.get("pip", []) if not e.startswith("-")]
        else:
            entries.append(entry)
    return dict(split_requirement(entry) for entry in entries)


# The pyproject extras each environment adds to the project's dependencies.
ENV_EXTRAS = {"saesanity.yaml": (), "judge.yaml": ("judge",)}


@pytest.mark.parametrize("env_file", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_conda_environment_matches_pyproject(env_file):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert env_file.name in ENV_EXTRAS, f"{env_file.name}: say which extras it adds"
    required = dict(split_requirement(r) for r in project["dependencies"])
    listed = conda_requirements(env_file)
    assert set(required) <= set(listed), f"{env_file.name} lacks {set(required) - set(listed)}"
    for name, specifier in required.items():
        assert listed[name] == specifier, f"{env_file.name}: {name}{listed[name]} != {specifier}"
    extras = dict(
        split_requirement(r)
        for extra in ENV_EXTRAS[env_file.name]
        for r in project["optional-dependencies"][extra]
    )
    for name, specifier in extras.items():
        # A conda-forge binary may carry a range; it must hold the version pip pins.
        pinned = str(specifier).removeprefix("==")
        assert listed.get(name) is not None and listed[name].contains(pinned), (
            f"{env_file.name}: {name}{listed.get(name)} does not hold {specifier}"
        )
    extra = set(listed) - set(required) - set(extras) - {"python", "pip"}
    assert not extra, f"{env_file.name} lists packages pyproject.toml does not: {extra}"
    # The environment's Python satisfies the project's requires-python.
    lowest = re.search(r">=\s*([\d.]+)", str(listed["python"])).group(1)
    assert SpecifierSet(project["requires-python"]).contains(lowest)


def test_every_rule_uses_an_environment_that_exists():
    used = set(re.findall(r'conda:\s*\n\s*"\.\./(envs/[^"]+)"', "".join(
        path.read_text() for path in (REPO / "rules").glob("*.smk")
    )))  # fmt: skip
    assert used == {"envs/saesanity.yaml", "envs/judge.yaml"}
    assert all((REPO / path).exists() for path in used)
    # Only AutoInterp's scoring loads the offline judge.
    autointerp = (REPO / "rules" / "autointerp.smk").read_text()
    assert autointerp.count("envs/judge.yaml") == 1


def test_split_requirement_reads_both_spellings():
    assert split_requirement("pytorch>=2.4") == ("torch", SpecifierSet(">=2.4"))
    assert split_requirement("Transformer_Lens >=4.3, <5") == (
        "transformer-lens", SpecifierSet("<5,>=4.3"),
    )  # fmt: skip
    assert split_requirement("x==2.8.0; python_version >= '3.11'")[1] == SpecifierSet("==2.8.0")
    # A different range is a mismatch.
    assert split_requirement("numpy>=1.26")[1] != split_requirement("numpy>=2")[1]


# ------------------------------------------------------------------------ provenance
def test_stamp_sets_code_version_config_hash_and_versions_on_every_row():
    frame = pd.DataFrame({"a": [1, 2, 3]})
    config = {"synthetic": {"k": 20}, "real": {"l0s": [8]}}
    stamped = provenance.stamp(frame, config)
    assert list(stamped.columns) == ["a", *provenance.PROVENANCE_COLUMNS]
    assert stamped["config_hash"].nunique() == 1
    # The hash follows the config's content, not its key order.
    reordered = {"real": {"l0s": [8]}, "synthetic": {"k": 20}}
    assert provenance.config_hash(reordered) == stamped["config_hash"].iloc[0]
    assert provenance.config_hash({**config, "real": {"l0s": [16]}}) != provenance.config_hash(
        config
    )
    # YAML mixes int and str keys (real.by_l0: 40 and "40/frozen_decoder/cov"); every
    # shipped config must hash, and 40 and "40" name the same key.
    mixed = {"by_l0": {40: {"l1": 0.1}, "40/frozen_decoder/cov": {"l1": 0.2}}}
    assert provenance.config_hash(mixed) == provenance.config_hash(
        {"by_l0": {"40": {"l1": 0.1}, "40/frozen_decoder/cov": {"l1": 0.2}}}
    )
    for path in [REPO / "config.yaml", *sorted((REPO / "config").glob("*.yaml"))]:
        assert len(provenance.config_hash(yaml.safe_load(path.read_text()))) == 16, path
    # This checkout is a git work tree: the version is git's, not "unknown".
    git = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--tags"], cwd=REPO,
        capture_output=True, text=True,
    )  # fmt: skip
    assert stamped["code_version"].iloc[0] == git.stdout.strip()
    versions = dict(item.split("==") for item in stamped["package_versions"].iloc[0].split(";"))
    assert versions["torch"] == metadata.version("torch")
    assert versions["pandas"] == pd.__version__ and "python" in versions
    # Restamping replaces the columns instead of duplicating them.
    assert list(provenance.stamp(stamped, config).columns) == list(stamped.columns)
    assert list(provenance.without_provenance(stamped).columns) == ["a"]


def test_code_version_is_unknown_outside_git(tmp_path):
    provenance.code_version.cache_clear()
    try:
        assert provenance.code_version(tmp_path) == "unknown"
    finally:
        provenance.code_version.cache_clear()


# ------------------------------------------------------------------------- resources
def planned_resources(result, rule: str) -> dict[str, str]:
    """The `resources:` (and threads) Snakemake's dry run prints for the first job of `rule`."""
    block = result.stdout.split(f"rule {rule}:", 1)[1].split("\n\n", 1)[0]
    values = dict(re.findall(r"(\w+)=([^,\s]+)", re.search(r"resources: (.*)", block).group(1)))
    threads = re.search(r"threads: (\d+)", block)
    values["threads"] = threads.group(1) if threads else "1"
    return values


@pytest.mark.parametrize(
    "configs, expected",
    [
        (("config.yaml",), {"gpu": "0", "mem_mb": "8000", "runtime": "600", "threads": "8"}),
        (("config.yaml", "config/paper.yaml"),
         {"gpu": "1", "mem_mb": "64000", "runtime": "2880", "threads": "8"}),
    ],
    ids=["default", "paper"],
)  # fmt: skip
def test_training_jobs_ask_for_the_configured_resources(configs, expected, tmp_path):
    target = "results/real/runs/topk/trained/iso/l0_40/seed0/sae.safetensors"
    if "config/paper.yaml" in configs:
        target = target.replace("l0_40", "l0_160")
    # One dry run: a training job and table 1 (whose rule is a light job).
    result = subprocess.run(
        snakemake_command(tmp_path, "-n", "--cores", "8", target, "results/real/table1.csv",
                          configs=configs),
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    resources = planned_resources(result, "real_train")
    assert {key: resources.get(key) for key in expected} == expected
    # Tables and figures never ask for a GPU.
    table = planned_resources(result, "real_table1")
    assert table["gpu"] == "0" and table["threads"] == "1"
