"""The training-length study on real activations: does the trained SAE pull away from
the random baselines when it trains longer?

For each architecture at one target L0, the trained SAE and each random baseline train
once to `max_steps` with the learning rate held constant after warm-up (no final
decay), and are evaluated from their snapshots at every doubling of optimiser steps
from `first_steps`. Without the decay, training does not depend on its budget, so a
snapshot at step N is the state an N-step run ends in (tested for the trainer). Each
point gets the metrics of table 1 that are cheap enough to repeat at every length:
held-out EV (and EV on training tokens, to see over-fitting), L0, dead fraction, the
spliced CE score and KL score, sparse-probing top-k accuracy, and the decoder's drift
from its initialisation (median cos(d, d_init), fraction of rows outside the
Soft-Frozen Decoder's cap).

The answer is the gap "trained minus the best random baseline" per metric against the
number of steps, and whether it has stopped changing by the rule of the synthetic
length study: every later doubling moves it by less than `tolerance`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import torch

from saesanity.core.checkpoint import load_sae, write_json
from saesanity.core.training import TrainConfig
from saesanity.evals.metrics import reconstruction_metrics
from saesanity.evals.sparse_probing import ActivationCache, evaluate_checkpoint
from saesanity.sources.activation_store import ActivationStore
from saesanity.sources.language_model import LanguageModel
from saesanity.studies.real import final_decoder_drift, load_splice_reference, splice_metrics
from saesanity.studies.runs import ConfigError, real_d_sae, real_train_config

log = logging.getLogger(__name__)

RUN_KEYS = ("architecture", "variant", "init", "target_l0", "batch_size", "seed")
RUN_DIR = (
    "results/real_length/runs/{architecture}/{variant}/{init}/l0_{target_l0}/"
    "bs{batch_size}/seed{seed}"
)
# Metrics where higher means the SAE is better (the gap is trained minus the best
# baseline); drift and over-fitting are reported but have no "better".
GAP_METRICS = ("explained_variance", "ce_loss_score", "kl_div_score")
DRIFT_METRICS = ("decoder_median_cosine_to_init", "decoder_fraction_outside_cap")


def _study(config: dict) -> dict:
    return config["real"].get("length_study") or {"enabled": False}


def study_l0(config: dict) -> int:
    study = _study(config)
    return int(study.get("target_l0") or config["real"]["table_l0"])


def step_points(first_steps: int, max_steps: int) -> list[int]:
    """Every doubling of `first_steps` up to `max_steps`, and `max_steps` itself."""
    if first_steps < 1 or max_steps < first_steps:
        raise ConfigError(
            f"real.length_study: first_steps {first_steps} and max_steps {max_steps} "
            "must satisfy 1 <= first_steps <= max_steps"
        )
    points, steps = [], first_steps
    while steps < max_steps:
        points.append(steps)
        steps *= 2
    return points + [max_steps]


def study_steps(config: dict) -> list[int] | None:
    """The lengths (optimiser steps) the study measures, whether or not it is on; None
    when the config has no study."""
    study = config["real"].get("length_study") or {}
    if "first_steps" not in study or "max_steps" not in study:
        return None
    return step_points(int(study["first_steps"]), int(study["max_steps"]))


def length_runs(config: dict) -> list[dict]:
    """Every run of the study (architecture x variant/init x seed), or none when off."""
    study = _study(config)
    if not study.get("enabled"):
        return []
    runs = []
    for architecture in study["architectures"]:
        for variant, inits in study["variants"].items():
            for init in inits:
                for seed in study["seeds"]:
                    runs.append(
                        {
                            "architecture": architecture,
                            "variant": variant,
                            "init": init,
                            "target_l0": study_l0(config),
                            "batch_size": int(study["batch_size"]),
                            "seed": int(seed),
                        }
                    )
    return runs


def run_dir(run: dict) -> str:
    return RUN_DIR.format(**run)


def sample_points(config: dict) -> list[int]:
    """Samples seen at each evaluation point (steps x batch size)."""
    study = _study(config)
    batch = int(study["batch_size"])
    return [steps * batch for steps in step_points(study["first_steps"], study["max_steps"])]


def length_train_config(
    config: dict,
    architecture: str,
    variant: str,
    init: str,
    target_l0: int | str,
    batch_size: int | str,
    seed: int | str,
) -> dict:
    """TrainConfig kwargs of one run: the grid's own (`real_train_config`: shared
    training, the architecture's and the L0's overrides), then the study's `training`
    overrides, its batch size and budget, and a snapshot at every evaluation point."""
    study = _study(config)
    values = real_train_config(config, architecture, variant, init, target_l0, seed)
    values.update(study.get("training") or {})
    values["batch_size"] = int(batch_size)
    values["max_samples"] = int(study["max_steps"]) * int(batch_size)
    values["min_samples"] = 0
    values["plateau_rel_tol"] = 0.0  # every point exists for every run
    values["snapshot_samples"] = sample_points(config)
    if values.get("decay_fraction", 0.0) > 0:
        raise ConfigError(
            "real.length_study.training.decay_fraction: must be 0 (a learning-rate decay "
            "at the end makes each snapshot depend on the budget, so it is not the state "
            "of a shorter run)"
        )
    TrainConfig(**values)
    return values


def check_length_config(config: dict) -> None:
    study = _study(config)
    if not study.get("enabled"):
        return
    step_points(study["first_steps"], study["max_steps"])
    if study_l0(config) not in config["real"]["l0s"] and not study.get("target_l0"):
        raise ConfigError(f"real.length_study: table_l0 {study_l0(config)} is not in real.l0s")
    if "trained" not in study["variants"]:
        raise ConfigError("real.length_study.variants: needs `trained` (the gap is to it)")
    for run in length_runs(config):
        try:
            length_train_config(config, **run)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"real.length_study run {run}: {error}") from error
    if real_d_sae(config) < study_l0(config):
        raise ConfigError("real.length_study: target L0 above the SAE width")


# ------------------------------------------------------------------ evaluation
def evaluate_length_point(
    weights_path: str | Path,
    config_path: str | Path,
    run: dict,
    model: LanguageModel,
    train_store_dir: str | Path,
    eval_store_dir: str | Path,
    reference_path: str | Path,
    probing_caches: dict[str, ActivationCache],
    probing_ks: list[int],
    eval_tokens: int,
    train_eval_tokens: int,
    model_batch_size: int,
    out_json: str | Path,
    outlier_factor: float | None = None,
    store_expect: dict | None = None,
) -> dict:
    """The study's metrics of one snapshot, written to `out_json`."""
    sae = load_sae(weights_path, config_path).eval()
    meta = json.loads(Path(config_path).read_text())
    metrics: dict[str, float] = {}
    with torch.no_grad():
        held_out = ActivationStore(
            eval_store_dir, seed=0, outlier_factor=outlier_factor, expect=store_expect
        )
        tokens = min(eval_tokens, held_out.n_tokens)
        metrics.update(reconstruction_metrics(sae, held_out, tokens, min(4096, tokens)))
        # Over-fitting: the same metric on tokens the SAE trained on (a fixed seed, so
        # every point and run sees the same ones).
        train = ActivationStore(
            train_store_dir, seed=0, outlier_factor=outlier_factor, expect=store_expect
        )
        tokens = min(train_eval_tokens, train.n_tokens)
        train_metrics = reconstruction_metrics(sae, train, tokens, min(4096, tokens))
        metrics["train_explained_variance"] = train_metrics["explained_variance"]
        reference, summary = load_splice_reference(reference_path)
        metrics.update(
            splice_metrics(model, sae, reference, summary, model_batch_size, outlier_factor)
        )
    metrics.update(evaluate_checkpoint(sae, probing_caches, ks=list(probing_ks), full_probe=None))
    tau = (meta.get("train_config") or {}).get("soft_freeze_tau", 0.8)
    metrics.update(final_decoder_drift(weights_path, tau))
    result = {
        "run": run,
        "steps": meta["steps"],
        "samples_seen": meta["samples_seen"],
        "wall_seconds": meta.get("wall_seconds"),
        "metrics": metrics,
    }
    write_json(out_json, result)
    return result


# ---------------------------------------------------------------------- tables
def collect_points(paths: list[str | Path]) -> pd.DataFrame:
    """One row per (run, evaluation point): the run's identity, steps and metrics."""
    rows = []
    for path in paths:
        result = json.loads(Path(path).read_text())
        rows.append(
            {
                **result["run"],
                "steps": result["steps"],
                "samples_seen": result["samples_seen"],
                "wall_seconds": result["wall_seconds"],
                **result["metrics"],
            }
        )
    table = pd.DataFrame(rows)
    return table.sort_values(
        ["architecture", "variant", "init", "seed", "steps"], ignore_index=True
    )


def settled_from(values: pd.Series, tolerance: float) -> float | None:
    """The synthetic length study's rule on one curve (index: steps): the first point
    from which every later doubling changes the value by less than `tolerance`
    (absolute); None when the last doubling still changes it by `tolerance` or more,
    or when there is only one point (nothing to compare)."""
    values = values.sort_index()
    if len(values) < 2:
        return None
    changes = values.diff().abs()
    settled_at = values.index[0]
    for index in range(1, len(values)):
        if changes.iloc[index] >= tolerance:
            if index + 1 == len(values):
                return None
            settled_at = values.index[index]
    return float(settled_at)


def gap_table(points: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Per architecture, seed, metric and steps: the trained SAE's value, the best
    random baseline's (and which one), the gap, and from which steps the gap and the
    trained value have settled (every later doubling moves them by < tolerance)."""
    rows = []
    metrics = [m for m in (*GAP_METRICS, *_probing_metrics(points)) if m in points]
    for (architecture, seed), group in points.groupby(["architecture", "seed"]):
        trained = group[group["variant"] == "trained"].set_index("steps")
        baselines = group[group["variant"] != "trained"]
        for metric in metrics:
            per_baseline = baselines.pivot_table(
                index="steps", columns=["variant", "init"], values=metric
            )
            best = per_baseline.max(axis=1)
            best_name = per_baseline.idxmax(axis=1)
            gap = (trained[metric] - best).dropna()
            gap_settled = settled_from(gap, tolerance)
            trained_settled = settled_from(trained[metric], tolerance)
            for steps in gap.index:
                variant, init = best_name[steps]
                rows.append(
                    {
                        "architecture": architecture,
                        "seed": seed,
                        "metric": metric,
                        "steps": int(steps),
                        "trained": float(trained.loc[steps, metric]),
                        "best_baseline": float(best[steps]),
                        "best_baseline_name": f"{variant}/{init}",
                        "gap": float(gap[steps]),
                        "gap_settled_from_steps": gap_settled,
                        "trained_settled_from_steps": trained_settled,
                    }
                )
    return pd.DataFrame(rows)


def _probing_metrics(points: pd.DataFrame) -> list[str]:
    return sorted(
        column
        for column in points.columns
        if column.startswith("sae_top_") and column.endswith("_test_accuracy")
    )
