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

from saesanity.core.training import VARIANTS, TrainConfig
from saesanity.evals.metrics import RECONSTRUCTION_METRICS
from saesanity.offline.pins import embedded_model, judge_gguf

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


def evaluation_points(first_samples: int, max_samples: int, batch_size: int) -> list[int]:
    """first_samples, 2x, 4x, ... up to max_samples, each rounded to the nearest multiple
    of batch_size (the trainer only sees sample counts that are step multiples, and a
    snapshot fires only on an exact match). The end of training is not listed: the
    final checkpoint is that point."""
    last = (max_samples // batch_size) * batch_size
    points: list[int] = []
    target = first_samples
    while target < last:
        point = max(batch_size, round(target / batch_size) * batch_size)
        if point < last and point not in points:
            points.append(point)
        target *= 2
    return points


def main_snapshot_samples(config: dict, run: dict, train_values: dict) -> list[int] | None:
    """Snapshot points of a main synthetic run, or None if the length study skips it."""
    study = config.get("length_study", {})
    main = study.get("main", {})
    if not main.get("enabled", False):
        return None
    if run["variant"] not in main["variants"] or run["init"] not in main["inits"]:
        return None
    return evaluation_points(
        study["first_samples"], train_values["max_samples"], train_values["batch_size"]
    )


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
    # The training-length study evaluates snapshots of these runs; no effect on training.
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
    check_real_config(config)
    judge = (config.get("autointerp") or {}).get("judge") or {}
    if judge.get("backend") == "local":
        try:
            judge_gguf(judge["local"]["gguf"])
        except KeyError as error:
            raise ConfigError(error.args[0]) from None


def set_threads(requested: int) -> int:
    """Use `requested` torch threads, capped at the cores this process may run on
    (a laptop's `--cores 8` must not oversubscribe a 2-core machine)."""
    import os

    import torch

    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, min(requested, available or 1))
    torch.set_num_threads(threads)
    return threads


class LineByLine:
    """A log file as progress bars' stream: tqdm redraws its line with a carriage return,
    which turns a log file into one unreadable line; here every redraw is a line."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self._at_line_start = True

    def write(self, text: str) -> int:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if self._at_line_start:
            text = text.lstrip("\n")
        while "\n\n" in text:
            text = text.replace("\n\n", "\n")
        if text:
            self.handle.write(text)
            self._at_line_start = text.endswith("\n")
        return len(text)

    def flush(self) -> None:
        self.handle.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.handle.fileno()


def setup_logging(log_path: str | Path) -> None:
    """Send logging, warnings and progress bars (stderr) of a workflow script to its log
    file, one line per message and per progress update."""
    log_file = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the script
    sys.stderr = LineByLine(log_file)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=log_file,
        force=True,
    )
    logging.captureWarnings(True)
    # Matplotlib's PDF backend subsets fonts with fontTools, which logs every table it
    # touches at INFO: dozens of lines per figure that say nothing about the run.
    logging.getLogger("fontTools").setLevel(logging.WARNING)


# ------------------------------------------------------------ real activations
REAL_RUN_KEYS = ("architecture", "variant", "init", "target_l0", "seed")
REAL_RUN_DIR = "results/real/runs/{architecture}/{variant}/{init}/l0_{target_l0}/seed{seed}"
# The researcher's own SAE (`saesanity check`) is a run of the real grid with this variant and init.
USER_VARIANT = "user"
USER_INIT = "none"
# The study's L0 sweep at Gemma-2-2B's width; other widths keep L0 / d.
STUDY_L0S = (80, 115, 160, 225, 320)
STUDY_D_MODEL = 2304


def scaled_l0s(d_model: int) -> list[int]:
    """The study's L0 values scaled to width `d_model` (same L0 / d)."""
    return sorted({max(1, round(l0 * d_model / STUDY_D_MODEL)) for l0 in STUDY_L0S})


def snapshot_points(max_samples: int, batch_size: int, fractions: list[float]) -> list[int]:
    """Sample counts (multiples of the batch, >= one batch) at `fractions` of training,
    where the lazy-training diagnostic snapshots the decoder."""
    points = []
    for fraction in fractions:
        steps = max(1, round(max_samples * fraction / batch_size))
        points.append(steps * batch_size)
    return sorted(set(points))


def real_run_from_path(path: str | Path) -> dict:
    """Run identity from a path inside a run directory (REAL_RUN_DIR)."""
    parts = Path(path).parts
    runs_at = len(parts) - 1 - parts[::-1].index("runs")
    architecture, variant, init, l0_dir, seed_dir = parts[runs_at + 1 : runs_at + 6]
    if not (l0_dir.startswith("l0_") and seed_dir.startswith("seed")):
        raise ValueError(f"{path}: expected .../runs/<arch>/<variant>/<init>/l0_<N>/seed<N>/...")
    return {
        "architecture": architecture,
        "variant": variant,
        "init": init,
        "target_l0": int(l0_dir.removeprefix("l0_")),
        "seed": int(seed_dir.removeprefix("seed")),
    }


def real_l0s(config: dict) -> list[int]:
    """`real.l0s`, or the study's sweep scaled to the model's width (same L0 / d)."""
    values = config["real"].get("l0s")
    return (
        sorted(int(v) for v in values) if values else scaled_l0s(config["real"]["model"]["d_model"])
    )


def real_table_l0(config: dict) -> int:
    """The L0 at which table 1 is reported: `real.table_l0`, else the middle of the sweep."""
    value = config["real"].get("table_l0")
    l0s = real_l0s(config)
    return int(value) if value is not None else l0s[len(l0s) // 2]


# Table 1's sparse-probing columns (each when its k is evaluated).
PROBING_SCORES = ("sae_top_1_test_accuracy", "sae_top_5_test_accuracy")


def real_metric_families(config: dict) -> dict[str, list[int] | None]:
    """The real study's enabled evaluation families, each with the L0s it evaluates
    (None: every L0 of the grid), in the order their columns join per L0."""
    families: dict[str, list[int] | None] = {"reconstruction": None}
    if config.get("autointerp", {}).get("enabled", False):
        families["autointerp"] = [real_table_l0(config)]
    if config["sparse_probing"]["enabled"]:
        families["sparse_probing"] = config["sparse_probing"]["l0s"]
    if config.get("ravel", {}).get("enabled", False):
        families["ravel"] = config["ravel"]["l0s"]
    return families


def table1_metrics(config: dict) -> list[str]:
    """Table 1's metric columns: every family evaluated at the table's L0."""
    table_l0 = real_table_l0(config)
    families = real_metric_families(config)
    at_table = {f for f, l0s in families.items() if l0s is None or table_l0 in l0s}
    metrics = list(RECONSTRUCTION_METRICS)
    if "autointerp" in at_table:
        metrics.append("autointerp_score")
    if "sparse_probing" in at_table:
        ks = config["sparse_probing"]["ks"]
        metrics += [score for score in PROBING_SCORES if int(score.split("_")[2]) in ks]
    if "ravel" in at_table:
        metrics.append("ravel_disentanglement")
    return metrics


def real_runs(config: dict) -> list[dict]:
    """Every real-activation run of the enabled groups, deduplicated and sorted."""
    runs = {}
    study = config["real"]
    for name in study["enabled_runs"]:
        spec = study["runs"][name]
        l0s = spec.get("l0s") or real_l0s(config)
        # `variants` maps each variant to the inits it is run with.
        pairs = [(v, init) for v, inits in spec["variants"].items() for init in inits]
        for architecture, (variant, init), l0, seed in itertools.product(
            spec["architectures"], pairs, l0s, spec["seeds"]
        ):
            combo = (architecture, variant, init, l0, seed)
            runs[combo] = dict(zip(REAL_RUN_KEYS, combo, strict=True))
    user = sanity_user_run(config)
    if user is not None:
        runs[tuple(user.values())] = user
    return [runs[key] for key in sorted(runs)]


def real_run_dir(run: dict) -> str:
    return REAL_RUN_DIR.format(**run)


def real_d_sae(config: dict) -> int:
    """`real.d_sae`, or `real.expansion` x the model's width."""
    study = config["real"]
    if study.get("d_sae"):
        return int(study["d_sae"])
    return int(study["expansion"]) * int(study["model"]["d_model"])


def sanity_user_run(config: dict) -> dict | None:
    """The researcher's own SAE as a run of the real grid (variant "user"), once
    `saesanity check` has measured its L0; None otherwise."""
    sanity = config.get("sanity") or {}
    if not sanity.get("sae") or not sanity.get("l0"):
        return None
    architecture = config["real"]["runs"]["sanity"]["architectures"][0]
    return dict(
        zip(
            REAL_RUN_KEYS,
            (architecture, USER_VARIANT, USER_INIT, int(sanity["l0"]), 0),
            strict=True,
        )
    )


def real_train_config(
    config: dict, architecture: str, variant: str, init: str, target_l0: int | str, seed: int | str
) -> dict:
    """TrainConfig kwargs of one real run: shared `training`, the architecture's
    overrides, its L0-specific overrides (`by_l0`: ReLU's L1 coefficient; keys "L0",
    then "L0/variant", then "L0/variant/init", the most specific applied last), the
    run's identity and the decoder snapshots of the lazy-training diagnostic."""
    study = config["real"]
    values = dict(study["training"])
    values.update(study.get("architectures", {}).get(architecture, {}))
    per_l0 = {
        str(key): value for key, value in study.get("by_l0", {}).get(architecture, {}).items()
    }
    for key in (f"{target_l0}", f"{target_l0}/{variant}", f"{target_l0}/{variant}/{init}"):
        values.update(per_l0.get(key, {}))
    values.update(
        architecture=architecture,
        variant=variant,
        init=init,
        seed=int(seed),
        d_sae=real_d_sae(config),
        k=int(target_l0),
    )
    if variant == "trained":
        values["snapshot_samples"] = snapshot_points(
            values["max_samples"], values["batch_size"], study["drift_fractions"]
        )
    TrainConfig(**values)
    return values


def real_model_spec(config: dict) -> dict:
    """ModelSpec kwargs from `real.model` (the embedded model loads from its converted copy)."""
    model = config["real"]["model"]
    keys = ("name", "layer", "hook", "context", "batch_size", "dtype", "revision", "d_model")
    spec = {key: model[key] for key in keys}
    spec["device"] = config["device"]
    if model.get("embedded"):
        spec["local_dir"] = REAL_MODEL_DIR
    return spec


REAL_MODEL_DIR = "resources/model"


def real_extraction_spec(config: dict) -> dict:
    """The model spec of the activation stores' forward passes: `real_model_spec` in the
    precision of `real.activations.precision` (every other forward pass is float32)."""
    precision = config["real"]["activations"].get("precision", "float32")
    return {**real_model_spec(config), "precision": precision}


def real_store_expect(config: dict) -> dict:
    """What an activation store's manifest must say for this config (checked by every
    job that reads a store, so a store of another model, layer or width is never used)."""
    model = config["real"]["model"]
    return {
        "model": model["name"],
        "layer": model["layer"],
        "hook": f"blocks.{model['layer']}.hook_{model['hook']}",
        "d_model": model["d_model"],
        "context": model["context"],
        "dtype": config["real"]["activations"]["dtype"],
    }


def validate_config(config: dict, schema_path: str | Path) -> None:
    """The config against the JSON schema, failing with one line per problem that names
    the key (Snakemake's own `validate` prints the whole schema with each error)."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    lines = []
    for error in errors[:10]:
        error = jsonschema.exceptions.best_match([error]) or error
        key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        lines.append(f"  {key}: {_short(error.message)}")
    more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
    raise ConfigError(f"the config does not match {schema_path}:\n" + "\n".join(lines) + more)


def _short(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[:limit] + " ..."


def check_real_config(config: dict) -> None:
    study = config.get("real")
    if study is None:
        return
    if study["model"].get("embedded"):
        try:
            embedded_model(study["model"]["embedded"])
        except KeyError as error:
            raise ConfigError(error.args[0]) from None
    for name in study["enabled_runs"]:
        if name not in study["runs"]:
            raise ConfigError(
                f"real.enabled_runs: {name!r} is not a group under real.runs "
                f"({sorted(study['runs'])})"
            )
    for key in study["training"]:
        if key in RUN_SET_FIELDS | {"snapshot_samples"}:
            raise ConfigError(f"real.training.{key}: set per run, not in training")
    l0s = real_l0s(config)
    table_l0 = study.get("table_l0")
    if table_l0 is not None and int(table_l0) not in l0s:
        raise ConfigError(f"real.table_l0: {table_l0} is not one of the L0 values {l0s}")
    for name in study["enabled_runs"]:
        for l0 in study["runs"][name].get("l0s") or []:
            if int(l0) not in l0s:
                raise ConfigError(f"real.runs.{name}.l0s: {l0} is not one of real.l0s {l0s}")
    model = study["model"]
    if model["layer"] < 0:
        raise ConfigError(f"real.model.layer: {model['layer']} must be >= 0")
    for run in real_runs(config):
        if run["variant"] not in VARIANTS:
            continue  # the researcher's own SAE: not trained here
        try:
            real_train_config(config, **run)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"real run {run}: {error}") from error
