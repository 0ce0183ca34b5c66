"""Provenance of result tables: which code, config and packages made each row.

Every result CSV the workflow writes goes through `write_result_csv`, which adds three
columns to every row:

* `code_version`: `git describe --always --dirty --tags` of the checkout the package
  was imported from ("unknown" outside git, e.g. an installed wheel);
* `config_hash`: the first 16 hex digits of the sha256 of the whole workflow config
  (the merged `--configfile`s), serialised as sorted JSON;
* `package_versions`: `name==version` of Python and of every dependency of saesanity,
  joined with ";" (sorted, so equal environments give equal strings).

The config hash is read from `snakemake.config` inside the job, not passed as a rule
parameter: a parameter would make every table rerun on any config change, whereas
Snakemake's params already rerun exactly the jobs whose slice of the config changed.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

import pandas as pd

from saesanity.studies.synthetic import write_csv

PROVENANCE_COLUMNS = ("code_version", "config_hash", "package_versions")
# Used when saesanity is imported from a source tree without being installed (PYTHONPATH):
# then importlib.metadata cannot list its requirements. Mirrors pyproject.toml.
FALLBACK_PACKAGES = (
    "torch", "numpy", "pandas", "matplotlib", "safetensors", "pyyaml", "tqdm", "snakemake",
    "transformers", "gguf", "transformer-lens", "snakemake-executor-plugin-slurm",
)  # fmt: skip
PACKAGE_ROOT = Path(__file__).resolve().parent


@cache
def code_version(source_dir: str | Path = PACKAGE_ROOT) -> str:
    """`git describe --always --dirty --tags` of the checkout holding `source_dir`."""
    try:
        result = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=source_dir, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "unknown"


def config_hash(config: dict) -> str:
    """A short, order-independent hash of a (nested) workflow config."""
    text = json.dumps(_string_keys(config), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _string_keys(value):
    """Mappings with str keys, recursively: YAML gives ints for keys like 40 and str for
    keys like "40/frozen_decoder/cov" (`real.by_l0`), which json cannot sort together."""
    if isinstance(value, dict):
        return {str(key): _string_keys(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_string_keys(item) for item in value]
    return value


def requirement_names(distribution: str = "saesanity") -> list[str]:
    """Names of the (non-optional) dependencies of `distribution`."""
    try:
        requirements = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return list(FALLBACK_PACKAGES)
    names = []
    for requirement in requirements:
        if "extra ==" in requirement:  # optional extras (tests) did not make results
            continue
        names.append(re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0))
    return names


@cache
def package_versions() -> str:
    """'python==X;name==version;...' for Python and saesanity's dependencies."""
    versions = {"python": platform.python_version()}
    for name in [*requirement_names(), "saesanity"]:
        try:
            versions[name.lower()] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name.lower()] = "not-installed"
    return ";".join(f"{name}=={version}" for name, version in sorted(versions.items()))


def stamp(frame: pd.DataFrame, config: dict) -> pd.DataFrame:
    """A copy of `frame` with the provenance columns set on every row (replacing any
    that a joined or concatenated input carried)."""
    stamped = frame.drop(columns=[c for c in PROVENANCE_COLUMNS if c in frame.columns])
    stamped = stamped.copy()
    stamped["code_version"] = code_version()
    stamped["config_hash"] = config_hash(config)
    stamped["package_versions"] = package_versions()
    return stamped


def write_result_csv(frame: pd.DataFrame, path: str | Path, config: dict) -> None:
    """Write a result table atomically, every row stamped with its provenance."""
    write_csv(stamp(frame, config), path)


def without_provenance(frame: pd.DataFrame) -> pd.DataFrame:
    """The table without its provenance columns (for comparing results across runs)."""
    return frame.drop(columns=[c for c in PROVENANCE_COLUMNS if c in frame.columns])
