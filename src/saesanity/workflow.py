"""Glue between config.yaml and the package: which runs exist, what config each
run trains with, and the checks a JSON schema cannot express.

Everything here is plain Python so the Snakefile stays declarative and these
functions can be tested without Snakemake.
"""

from __future__ import annotations

import itertools
import logging
import sys
from dataclasses import fields
from pathlib import Path

from saesanity.training import TrainConfig

RUN_KEYS = ("regime", "architecture", "variant", "init", "seed")
SYNTHETIC_RUN_DIR = "results/synthetic/{regime}/runs/{architecture}/{variant}/{init}/seed{seed}"
TRAIN_CONFIG_FIELDS = {f.name for f in fields(TrainConfig)}
# Set per run from the run's identity or the study's shape, never from `training:`.
RUN_SET_FIELDS = {"architecture", "variant", "init", "seed", "d_sae", "k"}


class ConfigError(ValueError):
    """A config value that is well-typed but inconsistent; the message names the key."""


def synthetic_runs(config: dict, group: str | None = None) -> list[dict]:
    """Every run of the enabled run groups (or of one group), deduplicated and sorted."""
    runs = {}
    study = config["synthetic"]
    for name in [group] if group is not None else study["enabled_runs"]:
        spec = study["runs"][name]
        for combo in itertools.product(
            spec["regimes"], spec["architectures"], spec["variants"], spec["inits"], spec["seeds"]
        ):
            run = dict(zip(RUN_KEYS, combo, strict=True))
            runs[tuple(combo)] = run
    return [runs[key] for key in sorted(runs, key=lambda c: tuple(str(v) for v in c))]


def run_dir(run: dict) -> str:
    return SYNTHETIC_RUN_DIR.format(**run)


def synthetic_train_config(
    config: dict, regime: str, architecture: str, variant: str, init: str, seed: int | str
) -> dict:
    """TrainConfig kwargs of one synthetic run: shared `training` values, then the
    architecture's overrides, then the run's identity."""
    study = config["synthetic"]
    values = dict(study["training"])
    values.update(study.get("architectures", {}).get(architecture, {}))
    values.update(
        architecture=architecture,
        variant=variant,
        init=init,
        seed=int(seed),
        d_sae=int(study["d_sae"]),
        k=int(study["k"]),
    )
    # Data-independent, but regimes may differ in how long they need.
    values.update(study["regimes"][regime].get("training", {}))
    # The length study (issue 8) evaluates snapshots of these runs; no effect on training.
    from saesanity.length_study import main_snapshot_samples

    run = {"regime": regime, "architecture": architecture, "variant": variant, "init": init}
    snapshots = main_snapshot_samples(config, run, values)
    if snapshots is not None:
        given = values.get("snapshot_samples", [])
        values["snapshot_samples"] = sorted(set(given) | set(snapshots))
    TrainConfig(**values)  # raises with the key name if a value is out of range
    return values


def check_config(config: dict) -> None:
    """Cross-field checks on top of the JSON schema; raise ConfigError naming the key."""
    study = config["synthetic"]
    regimes = set(study["regimes"])
    for name in study["enabled_runs"]:
        if name not in study["runs"]:
            raise ConfigError(
                f"synthetic.enabled_runs: {name!r} is not a group under synthetic.runs "
                f"({sorted(study['runs'])})"
            )
    for name, spec in study["runs"].items():
        for regime in spec["regimes"]:
            if regime not in regimes:
                raise ConfigError(
                    f"synthetic.runs.{name}.regimes: {regime!r} is not a regime defined under "
                    f"synthetic.regimes ({sorted(regimes)})"
                )
    for key in study["training"]:
        if key in RUN_SET_FIELDS:
            raise ConfigError(f"synthetic.training.{key}: set per run, not in training")
    fractions = study.get("architectures", {}).get("matryoshka", {}).get("group_fractions")
    if fractions is not None and abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(
            f"synthetic.architectures.matryoshka.group_fractions: {fractions} must sum to 1"
        )
    for run in synthetic_runs(config):
        try:
            synthetic_train_config(config, **run)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"synthetic run {run}: {error}") from error


def set_threads(requested: int) -> int:
    """Use `requested` torch threads, capped at the cores this process may run on
    (a laptop's `--cores 8` must not oversubscribe a 2-core machine)."""
    import os

    import torch

    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, min(requested, available or 1))
    torch.set_num_threads(threads)
    return threads


def setup_logging(log_path: str | Path) -> None:
    """Send logging, warnings and progress bars (stderr) of a workflow script to its log file."""
    log_file = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the script
    sys.stderr = log_file
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=log_file,
        force=True,
    )
    logging.captureWarnings(True)
