"""Case study 1 end to end: train on synthetic data, evaluate, tabulate."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from saesanity.core.checkpoint import atomic_write, load_sae, write_json
from saesanity.core.training import TrainConfig, train
from saesanity.evals.metrics import (
    feature_recovery,
    matched_pair_metrics,
    recovery_summary,
    recovery_table,
    synthetic_held_out_metrics,
)
from saesanity.sources.synthetic import SyntheticSource, load_ground_truth
from saesanity.studies.runs import RUN_KEYS

RUN_COLUMNS = list(RUN_KEYS)  # a run's identity, as table columns
SUMMARY_METRICS = [
    "explained_variance",
    "l0",
    "dead_fraction",
    "recovered_fraction",
    "recovered_count",
    "mean_max_cosine",
    "samples_seen",
]


def train_synthetic_run(
    truth_path: str | Path, train_config: dict, out_dir: str | Path, device: str = "cpu"
) -> None:
    truth = load_ground_truth(truth_path)
    config = TrainConfig(**train_config)
    # The training stream is seeded by the run seed: same seed => same data order
    # for every architecture and variant.
    source = SyntheticSource(truth, seed=config.seed, stream="train")
    train(config, source, out_dir, device=device)


def evaluate_synthetic_run(
    weights_path: str | Path,
    sae_config_path: str | Path,
    truth_path: str | Path,
    run: dict,
    regime_spec: dict,
    eval_samples: int,
    eval_batch_size: int,
    eval_seed: int,
    recovery_threshold: float,
    out_json: str | Path,
    out_recovery_csv: str | Path,
    latent_classification: bool = True,
) -> dict:
    """Held-out EV/L0/dead fraction plus per-feature recovery of one run (and, unless
    `latent_classification` is False, SynthSAEBench's per-latent classification)."""
    sae = load_sae(weights_path, sae_config_path)
    sae_meta = json.loads(Path(sae_config_path).read_text())
    truth = load_ground_truth(truth_path)
    # One evaluation stream per regime: every run is scored on the same samples.
    source = SyntheticSource(truth, seed=eval_seed, stream="eval")
    held_out = synthetic_held_out_metrics(
        sae, source, eval_samples, eval_batch_size, classification=latent_classification
    )
    metrics = {key: value for key, value in held_out.items() if not key.startswith("latent_")}
    recovery, best_latent = feature_recovery(truth.features, sae.W_dec.detach())
    metrics.update(recovery_summary(recovery, recovery_threshold))
    metrics["recovery_threshold"] = recovery_threshold
    # SynthSAEBench's metrics (SAELens's synthetic benchmark) beside them: matched pairs,
    # then the per-latent classification from the same pass over the held-out samples.
    metrics.update(matched_pair_metrics(sae.W_dec.detach(), truth.features))
    metrics.update({key: value for key, value in held_out.items() if key.startswith("latent_")})
    table = recovery_table(recovery, best_latent, truth.probabilities)
    atomic_write(out_recovery_csv, lambda tmp: table.to_csv(tmp, index=False))
    result = {
        "run": run,
        "regime_spec": regime_spec,
        "train_config": sae_meta["train_config"],
        "training": {
            key: sae_meta[key]
            for key in (
                "samples_seen",
                "steps",
                "stop_reason",
                "wall_seconds",
                "final_loss_window_change",
            )
        },  # fmt: skip
        "metrics": metrics,
    }
    write_json(out_json, result)
    return result


def training_length_note(metrics: pd.DataFrame, settled: pd.DataFrame | None = None) -> str:
    """One line for a figure: how many of the runs it shows met the plateau rule (their
    loss stopped changing) and how many stopped at their sample cap with the loss still
    falling; then, from the length study's `settled` table of these runs (snapshots at
    every doubling; None when the study is off), for which of them EV and recovery had
    stopped changing by its rule, and which were still moving at their last point."""
    required = ["stop_reason", "cfg_plateau_rel_tol", "cfg_plateau_window_samples"]
    missing = [column for column in required if column not in metrics.columns]
    if missing:
        raise ValueError(f"training_length_note: metrics table lacks {missing}")
    if metrics.empty:
        raise ValueError("training_length_note: metrics table has no rows")
    runs = len(metrics)
    plateaued = int((metrics["stop_reason"] == "plateau").sum())
    tolerance = float(metrics["cfg_plateau_rel_tol"].max())
    window = float(metrics["cfg_plateau_window_samples"].max())
    rule = f"loss down < {tolerance:.0%} per {window / 1e6:g}M samples"
    if plateaued == runs:
        loss = f"all {runs} runs met the plateau rule ({rule})"
    else:
        loss = (
            f"{runs - plateaued} of {runs} runs stopped at their sample cap before the "
            f"plateau rule ({rule}), their loss still falling"
        )
    representation, still_moving = _representation_note(metrics, settled)
    # A verdict only from evidence: a capped loss, or a curve still moving.
    verdict = "NOT SETTLED. " if plateaued < runs or still_moving else ""
    return f"Training length: {verdict}{loss}; {representation} (docs/synthetic.md)."


def _representation_note(metrics: pd.DataFrame, settled: pd.DataFrame | None) -> tuple[str, bool]:
    """Whether EV and recovery of the figure's runs have stopped changing, per curve
    (regime x architecture x variant x init, mean over seeds) of the length study: the
    text, and whether some curve was still moving at its last point."""
    if settled is None:
        return "whether EV and recovery stopped changing is not measured (length_study.main)", False
    keys = ["regime", "architecture", "variant", "init"]
    missing = [key for key in [*keys, "settled_samples", "tolerance"] if key not in settled]
    if missing:
        raise ValueError(f"training_length_note: settled table lacks {missing}")
    shown = metrics[keys].drop_duplicates()
    curves = settled.merge(shown, on=keys, how="inner")
    if curves.empty:
        return "the length study follows none of these runs", False
    moving = curves[curves["settled_samples"].isna()]
    rule = f"every later doubling < {float(curves['tolerance'].max()):g}"
    if "relative_tolerance" in curves and float(curves["relative_tolerance"].max()) > 0:
        rule += f", recovered also < {float(curves['relative_tolerance'].max()):.0%}"
    unfollowed = len(shown) - len(curves)
    tail = f"; {unfollowed} not followed" if unfollowed else ""
    if {"seeds_first", "seeds_last"} <= set(curves.columns):
        # Seeds stop on their own plateaus: the last point may rest on fewer of them.
        thin = curves[curves["seeds_last"] < curves["seeds_first"]]
        if not thin.empty:
            tail += "; last point from fewer seeds: " + ", ".join(
                f"{row.regime} {row.architecture} ({row.seeds_last} of {row.seeds_first})"
                for row in thin.itertuples()
            )
    if moving.empty:
        return f"EV and recovery settled for all {len(curves)} followed ({rule}){tail}", False
    names = ", ".join(
        f"{row.regime} {row.architecture}" + ("" if row.variant == "trained" else f" {row.variant}")
        for row in moving.itertuples()
    )
    return (
        f"EV or recovery still moving at the last point for {len(moving)} of "
        f"{len(curves)} ({rule}): {names}{tail}",
        True,
    )


def _flatten(prefix: str, values: dict) -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, (list, tuple)):
            value = json.dumps(list(value))
        flat[f"{prefix}{key}"] = value
    return flat


def collect_metrics(
    eval_paths: list[str | Path], run_columns: list[str] = RUN_COLUMNS
) -> pd.DataFrame:
    """One row per run: identity, metrics, training facts, every config value (and
    the synthetic data's settings, where the evaluation has them)."""
    rows = []
    for path in eval_paths:
        result = json.loads(Path(path).read_text())
        row = dict(result["run"])
        row.update(result["metrics"])
        row.update(result["training"])
        if "regime_spec" in result:
            row.update(_flatten("data_", result["regime_spec"]))
        # A researcher's own SAE (a sanity check) has no training config of ours.
        train_config = result["train_config"] or {}
        config = {k: v for k, v in train_config.items() if k not in run_columns}
        row.update(_flatten("cfg_", config))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if len(frame):
        frame = frame.sort_values(run_columns).reset_index(drop=True)
    return frame


def summary_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (regime, architecture, variant, init)."""
    group = ["regime", "architecture", "variant", "init"]
    aggregated = metrics.groupby(group)[SUMMARY_METRICS].agg(["mean", "std"])
    aggregated.columns = [f"{metric}_{stat}" for metric, stat in aggregated.columns]
    aggregated["seeds"] = metrics.groupby(group)["seed"].nunique()
    return aggregated.reset_index()


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def random_decoder_recovery(n: int, num_features: int, d_sae: int, seed: int = 0) -> float:
    """Mean max cosine of a ground-truth feature to d_sae random unit directions:
    the chance level that recovery numbers should be read against."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(num_features, n, generator=generator)
    decoder = torch.randn(d_sae, n, generator=generator)
    return float(feature_recovery(features, decoder)[0].mean())


def run_from_path(path: str | Path) -> dict:
    """Run identity from a path inside a run directory (see workflow.SYNTHETIC_RUN_DIR)."""
    parts = Path(path).parts
    runs_at = len(parts) - 1 - parts[::-1].index("runs")
    regime = parts[runs_at - 1]
    architecture, variant, init, seed_dir = parts[runs_at + 1 : runs_at + 5]
    if not seed_dir.startswith("seed"):
        raise ValueError(f"{path}: expected .../runs/<arch>/<variant>/<init>/seed<N>/...")
    return {
        "regime": regime,
        "architecture": architecture,
        "variant": variant,
        "init": init,
        "seed": int(seed_dir.removeprefix("seed")),
    }


def _load_with_identity(paths: list[str | Path]) -> list[pd.DataFrame]:
    frames = []
    for path in paths:
        frame = pd.read_csv(path)
        for key, value in run_from_path(path).items():
            frame[key] = value
        frames.append(frame)
    return frames


def load_recoveries(paths: list[str | Path]) -> list[pd.DataFrame]:
    """Per-feature recovery tables, each tagged with its run's identity columns."""
    return _load_with_identity(paths)


def load_curves(paths: list[str | Path]) -> pd.DataFrame:
    """All training curves in one frame, tagged with run identity columns."""
    return pd.concat(_load_with_identity(paths), ignore_index=True)
