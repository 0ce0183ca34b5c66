"""Case study 2 end to end on real residual-stream activations: corpus windows ->
activation stores -> SAEs and random baselines -> reconstruction metrics -> table 1.

Reconstruction metrics follow SAEBench's "core" conventions (anchor_protocols.md
section 5): the reconstruction replaces the hooked activation at every position
except BOS; the reference is zero-ablation of the whole activation (BOS
included); averages skip predictions made at BOS. Explained variance uses the
protocol's formula (metrics.ReconstructionStats).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from saesanity.core.checkpoint import atomic_write, load_sae, write_json
from saesanity.core.sae import SparseAutoencoder
from saesanity.core.training import TrainConfig, train
from saesanity.evals.metrics import RECONSTRUCTION_METRICS, reconstruction_metrics
from saesanity.sources.activation_store import ActivationStore
from saesanity.sources.language_model import LanguageModel
from saesanity.studies.runs import REAL_RUN_KEYS, real_run_from_path
from saesanity.studies.synthetic import collect_metrics

log = logging.getLogger(__name__)

SAELENS_FORMAT_VERSION = "6.54.12"


# ---------------------------------------------------------------- training
def train_real_run(
    store_dir: str | Path,
    train_config: dict,
    out_dir: str | Path,
    device: str = "cpu",
    shuffle_shards: int = 4,
    saelens_metadata: dict | None = None,
    outlier_factor: float | None = None,
    store_expect: dict | None = None,
) -> None:
    """Train one SAE or baseline on an activation store and export it for SAELens.
    `store_expect`: what the store's manifest must say (model, layer, width, ...)."""
    config = TrainConfig(**train_config)
    # The run seed orders the data: every variant with the same seed sees the same
    # batches in the same order (the study's "shared data order").
    store = ActivationStore(
        store_dir,
        seed=config.seed,
        shuffle_shards=shuffle_shards,
        outlier_factor=outlier_factor,
        expect=store_expect,
    )
    sae = train(config, store, out_dir, device=device)
    metadata = {**(saelens_metadata or {}), "loaded_model": store.manifest.get("loaded_model")}
    export_saelens(sae, Path(out_dir) / "saelens", metadata)


def export_saelens(sae: SparseAutoencoder, out_dir: str | Path, metadata: dict) -> None:
    """SAELens's on-disk format: cfg.json + sae_weights.safetensors.

    Our SAE scales inputs by `input_scale` internally; SAELens's layout has no
    such factor ("normalize_activations": "none"), so it is folded into the
    weights: W_enc' = s W_enc, W_dec' = W_dec / s, b_dec' = b_dec / s.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scale = float(sae.input_scale)
    tensors = {
        "W_enc": (sae.W_enc.detach() * scale).t().contiguous(),  # SAELens: [d_in, d_sae]
        "b_enc": sae.b_enc.detach().clone(),
        "W_dec": (sae.W_dec.detach() / scale).contiguous(),  # [d_sae, d_in]
        "b_dec": (sae.b_dec.detach() / scale).clone(),
    }
    threshold = sae.saelens_threshold(out_dir)
    if threshold is not None:
        tensors["threshold"] = threshold
    cfg = {
        "architecture": sae.saelens_architecture,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            # Without it SAELens reads the file as a pre-6.0 config and drops the
            # hook, model and context below; this is the release the format was checked
            # against (tests/test_saelens.py loads every architecture with it).
            "sae_lens_version": SAELENS_FORMAT_VERSION,
            "saesanity_architecture": sae.architecture,
            "hook_name": metadata.get("hook_name"),
            "model_name": metadata.get("model_name"),
            "context_size": metadata.get("context_size"),
            "prepend_bos": True,
            "exclude_special_tokens": True,
            **{k: v for k, v in metadata.items() if k not in ("hook_name", "model_name")},
        },
    }
    cfg.update(sae.saelens_cfg())
    atomic_write(out_dir / "sae_weights.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    write_json(out_dir / "cfg.json", cfg)


# -------------------------------------------------------- CE/KL reference
@torch.no_grad()
def build_splice_reference(
    model: LanguageModel, windows: np.ndarray, out_path: str | Path, batch_size: int
) -> dict:
    """Hooked activations of the evaluation windows (every position, BOS included),
    with the clean and zero-ablation losses every checkpoint is compared to."""
    tokens = torch.from_numpy(windows).long()
    residuals, clean_ce, zero_ce, zero_kl = [], [], [], []
    for start in range(0, len(tokens), batch_size):
        batch = tokens[start : start + batch_size]
        residual = model.residual(batch)
        clean = model.logits_from_hook(residual, batch)
        zero = model.logits_from_hook(torch.zeros_like(residual), batch)
        clean_ce.append(_token_ce(clean, batch))
        zero_ce.append(_token_ce(zero, batch))
        zero_kl.append(_token_kl(clean, zero))
        residuals.append(residual)
    summary = {
        "windows": len(tokens),
        "context": int(tokens.shape[1]),
        "scored_tokens": int(torch.cat(clean_ce).numel()),
        "ce_clean": float(torch.cat(clean_ce).mean()),
        "ce_zero_ablation": float(torch.cat(zero_ce).mean()),
        "kl_zero_ablation": float(torch.cat(zero_kl).mean()),
        "hook": model.spec.hook_name,
    }
    payload = {"residual": torch.cat(residuals).contiguous(), "tokens": tokens.int().contiguous()}
    atomic_write(
        out_path,
        lambda tmp: save_file(payload, str(tmp), metadata={"summary": json.dumps(summary)}),
    )
    return summary


def load_splice_reference(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        summary = json.loads(handle.metadata()["summary"])
    return load_file(str(path)), summary


def _token_ce(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token CE per prediction, skipping the prediction made at BOS."""
    log_probs = logits[:, 1:-1].log_softmax(-1)
    targets = tokens[:, 2:].long()
    return -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1).flatten()


def _token_kl(clean_logits: torch.Tensor, new_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_clean || p_new) per prediction, skipping the prediction made at BOS."""
    clean = clean_logits[:, 1:-1].log_softmax(-1)
    new = new_logits[:, 1:-1].log_softmax(-1)
    return (clean.exp() * (clean - new)).sum(-1).flatten()


@torch.no_grad()
def splice_metrics(
    model: LanguageModel,
    reconstruct: Callable[[torch.Tensor], torch.Tensor],
    reference: dict[str, torch.Tensor],
    summary: dict,
    batch_size: int,
    outlier_factor: float | None = None,
) -> dict[str, float]:
    """CE loss and KL with `reconstruct(activations)` (an SAE's forward: [n, d] ->
    [n, d]) written at the hook at all positions but BOS and, with
    `outlier_factor`, but the outlier tokens the SAEs never saw (norm above
    `outlier_factor` x the median; kept clean like BOS), and SAEBench's scores
    against zero-ablation."""
    residual_all, tokens_all = reference["residual"], reference["tokens"].long()
    norms = residual_all[:, 1:].norm(dim=-1)
    splice_mask = torch.zeros(residual_all.shape[:2], dtype=torch.bool)
    splice_mask[:, 1:] = True
    if outlier_factor is not None:
        splice_mask[:, 1:] = norms <= outlier_factor * norms.median()
    ce, kl = [], []
    for start in range(0, len(tokens_all), batch_size):
        residual = residual_all[start : start + batch_size]
        tokens = tokens_all[start : start + batch_size]
        mask = splice_mask[start : start + batch_size]
        spliced = residual.clone()
        spliced[mask] = reconstruct(residual[mask]).cpu()
        clean_logits = model.logits_from_hook(residual, tokens)
        new_logits = model.logits_from_hook(spliced, tokens)
        ce.append(_token_ce(new_logits, tokens))
        kl.append(_token_kl(clean_logits, new_logits))
    ce_sae = float(torch.cat(ce).mean())
    kl_sae = float(torch.cat(kl).mean())
    ce_clean, ce_zero = summary["ce_clean"], summary["ce_zero_ablation"]
    return {
        "ce_loss": ce_sae,
        "ce_loss_clean": ce_clean,
        "ce_loss_zero_ablation": ce_zero,
        "ce_loss_score": (ce_zero - ce_sae) / (ce_zero - ce_clean),
        "kl_divergence": kl_sae,
        "kl_div_score": (summary["kl_zero_ablation"] - kl_sae) / summary["kl_zero_ablation"],
        "spliced_fraction": float(splice_mask[:, 1:].float().mean()),
    }


# ------------------------------------------------------------ evaluation
def decoder_drift(run_dir: str | Path) -> pd.DataFrame:
    """cos(d_j at snapshot, d_j at init) for every decoder row and snapshot of a run
    (the lazy-training diagnostic); empty when the run has no snapshots."""
    rows = []
    for meta_path in sorted(Path(run_dir).glob("snapshots/samples*.json")):
        tensors = load_file(str(meta_path.with_suffix(".safetensors")))
        samples = json.loads(meta_path.read_text())["samples_seen"]
        current, initial = tensors["W_dec"], tensors["W_dec_init"]
        cosine = torch.nn.functional.cosine_similarity(current, initial, dim=1)
        total = json.loads(meta_path.read_text())["train_config"]["max_samples"]
        rows.append(
            pd.DataFrame(
                {
                    "samples_seen": samples,
                    "fraction_of_training": samples / total,
                    "latent": np.arange(len(cosine)),
                    "cosine_to_init": cosine.numpy(),
                }
            )
        )
    if not rows:
        return pd.DataFrame(
            columns=["samples_seen", "fraction_of_training", "latent", "cosine_to_init"]
        )
    return pd.concat(rows, ignore_index=True)


CAP_BOUNDARY_TOLERANCE = 1e-4


def final_decoder_drift(weights_path: str | Path, tau: float) -> dict[str, float]:
    """How far the decoder rows moved from their random initial directions: the median
    cos(d_j, d_j at init) over rows and the fraction of rows outside the Soft-Frozen
    Decoder's cap (cos < tau). Empty for an SAE saved without its initial decoder (a
    researcher's own)."""
    tensors = load_file(str(weights_path))
    if "W_dec_init" not in tensors:
        return {}
    cosine = torch.nn.functional.cosine_similarity(tensors["W_dec"], tensors["W_dec_init"], dim=1)
    # The Soft-Frozen Decoder holds its rows on the cap's boundary, where float32
    # rounding puts about a fifth of them a hair below tau: they count as inside.
    outside = cosine < tau - CAP_BOUNDARY_TOLERANCE
    return {
        "decoder_median_cosine_to_init": float(cosine.quantile(0.5)),
        "decoder_fraction_outside_cap": float(outside.float().mean()),
    }


def evaluate_real_run(
    run_dir: str | Path,
    run: dict,
    model: LanguageModel,
    eval_store_dir: str | Path,
    reference_path: str | Path,
    eval_tokens: int,
    batch_size: int,
    out_json: str | Path,
    out_drift_csv: str | Path,
    outlier_factor: float | None = None,
    store_expect: dict | None = None,
) -> dict:
    """Reconstruction metrics of one checkpoint on held-out tokens (the same outlier
    rule as in training) and its decoder drift table."""
    run_dir = Path(run_dir)
    sae = load_sae(run_dir / "sae.safetensors", run_dir / "sae.json")
    sae_meta = json.loads((run_dir / "sae.json").read_text())
    store = ActivationStore(
        eval_store_dir, seed=0, outlier_factor=outlier_factor, expect=store_expect
    )
    tokens = min(eval_tokens, store.n_tokens)
    # One pass over the held-out tokens (a full epoch of the shuffled stream).
    metrics = reconstruction_metrics(sae, store, tokens, min(batch_size * 64, tokens))
    reference, summary = load_splice_reference(reference_path)
    metrics.update(splice_metrics(model, sae, reference, summary, batch_size, outlier_factor))
    metrics["outliers_dropped"] = store.outliers_dropped
    # The lazy-training diagnostic of the final decoder, for every run and length.
    tau = (sae_meta.get("train_config") or {}).get("soft_freeze_tau", 0.8)
    metrics.update(final_decoder_drift(run_dir / "sae.safetensors", tau))
    drift = decoder_drift(run_dir)
    atomic_write(out_drift_csv, lambda tmp: drift.to_csv(tmp, index=False))
    result = {
        "run": run,
        "train_config": sae_meta["train_config"],
        "training": {
            key: sae_meta[key] for key in ("samples_seen", "steps", "stop_reason", "wall_seconds")
        },
        "metrics": metrics,
    }
    write_json(out_json, result)
    return result


# --------------------------------------------------------------- tables
def collect_real_metrics(eval_paths: list[str | Path]) -> pd.DataFrame:
    """One row per checkpoint (the synthetic study's collector, real run identity)."""
    return collect_metrics(eval_paths, list(REAL_RUN_KEYS))


def table1(metrics: pd.DataFrame, l0: int, columns: list[str] | None = None) -> pd.DataFrame:
    """The study's table: per architecture and variant (with its init), each metric
    at L0 = `l0` as mean and std over seeds, plus per architecture the row "best
    frozen minus fully trained" in percent of the trained value. "Best" is the
    higher value, except for losses (CE, KL), where lower is better."""
    columns = columns or [c for c in RECONSTRUCTION_METRICS if c in metrics.columns]
    at_l0 = metrics[metrics["target_l0"] == int(l0)]
    if at_l0.empty:
        raise ValueError(
            f"table 1: no run has target L0 {l0} (runs: {sorted(set(metrics['target_l0']))})"
        )
    rows = []
    lower_is_better = {"ce_loss", "kl_divergence", "dead_fraction"}
    for architecture, group in at_l0.groupby("architecture", sort=True):
        stats = group.groupby(["variant", "init"])[columns].agg(["mean", "std"])
        seeds = group.groupby(["variant", "init"])["seed"].nunique()
        for (variant, init), values in stats.iterrows():
            row = {"architecture": architecture, "variant": variant, "init": init}
            for column in columns:
                row[f"{column}_mean"] = values[(column, "mean")]
                row[f"{column}_std"] = values[(column, "std")]
            row["seeds"] = int(seeds[(variant, init)])
            rows.append(row)
        variants = stats.index.get_level_values("variant")
        if "trained" not in variants or (variants == "trained").all():
            continue
        trained = stats[variants == "trained"]
        frozen = stats[variants != "trained"]
        row = {"architecture": architecture, "variant": "best frozen - trained (%)", "init": ""}
        for column in columns:
            reference = float(trained[(column, "mean")].iloc[0])
            candidates = frozen[(column, "mean")]
            best = candidates.min() if column in lower_is_better else candidates.max()
            row[f"{column}_mean"] = (
                100.0 * (best - reference) / abs(reference) if reference else math.nan
            )
            row[f"{column}_std"] = math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def load_drift(paths: list[str | Path]) -> pd.DataFrame:
    """All drift tables in one frame, tagged with run identity columns."""
    frames = []
    for path in paths:
        frame = pd.read_csv(path)
        for key, value in real_run_from_path(path).items():
            frame[key] = value
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def join_metric_families(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per run from per-family tables (reconstruction, probing, ...), joined
    on the run identity; a column present in several families keeps the first."""
    joined = frames[0]
    for frame in frames[1:]:
        extra = [c for c in frame.columns if c not in joined.columns or c in REAL_RUN_KEYS]
        joined = joined.merge(frame[extra], on=list(REAL_RUN_KEYS), how="outer")
    return joined.sort_values(list(REAL_RUN_KEYS)).reset_index(drop=True)
