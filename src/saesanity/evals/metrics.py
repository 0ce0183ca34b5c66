"""Evaluation metrics shared by the synthetic and real-activation studies."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from saesanity.core.data import ActivationSource
from saesanity.core.sae import SparseAutoencoder
from saesanity.core.sparse_ops import SparseCode


@dataclass
class ReconstructionStats:
    """Streaming accumulator for explained variance, L0 and firing counts.

    Explained variance uses the protocol's formula over the whole evaluation set,
        EV = 1 - E||x - x_hat||^2 / (E||x||^2 - ||E x||^2),
    i.e. the error relative to the total variance about the data mean (not the
    per-batch average of SAEBench's legacy form, nor its variance-about-zero form).
    """

    num_latents: int
    count: int = 0
    squared_error: float = 0.0
    squared_norm: float = 0.0
    active_entries: int = 0
    sum_x: torch.Tensor | None = None
    fire_counts: torch.Tensor | None = None

    def update(self, x: torch.Tensor, x_hat: torch.Tensor, latents: torch.Tensor) -> None:
        x, x_hat = x.double(), x_hat.double()
        if self.sum_x is None:
            self.sum_x = torch.zeros(x.shape[1], dtype=torch.float64)
            self.fire_counts = torch.zeros(self.num_latents, dtype=torch.long)
        self.count += x.shape[0]
        self.squared_error += float((x - x_hat).pow(2).sum())
        self.squared_norm += float(x.pow(2).sum())
        self.sum_x += x.sum(0).cpu()
        self.active_entries += latents.numel()
        self.fire_counts += torch.bincount(latents.cpu(), minlength=self.num_latents)

    def explained_variance(self) -> float:
        mean = self.sum_x / self.count
        total_variance = self.squared_norm / self.count - float(mean.pow(2).sum())
        return 1.0 - (self.squared_error / self.count) / total_variance

    def summary(self) -> dict[str, float]:
        return {
            "explained_variance": self.explained_variance(),
            "mse": self.squared_error / self.count,
            "l0": self.active_entries / self.count,
            "dead_fraction": float((self.fire_counts == 0).float().mean()),
            "eval_samples": self.count,
        }


# The reconstruction family's columns, per checkpoint (the real study's table 1).
RECONSTRUCTION_METRICS = [
    "explained_variance",
    "l0",
    "dead_fraction",
    "ce_loss",
    "kl_divergence",
    "ce_loss_score",
    "kl_div_score",
]


def explained_variance(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """EV of one batch with the protocol's formula."""
    stats = ReconstructionStats(num_latents=1)
    stats.update(x, x_hat, torch.zeros(0, dtype=torch.long))
    return stats.explained_variance()


@torch.no_grad()
def reconstruction_metrics(
    sae: SparseAutoencoder, source: ActivationSource, num_samples: int, batch_size: int
) -> dict[str, float]:
    """EV, MSE, L0 and dead fraction of an SAE in inference mode on held-out samples."""
    stats = ReconstructionStats(sae.d_sae)
    for step in range(max(1, num_samples // batch_size)):
        x = source.batch(step, batch_size)
        code = sae.encode_sparse(x)
        active = code.values > 0
        stats.update(x, sae.decode_sparse(code), code.latents[active])
    return stats.summary()


def feature_recovery(
    features: torch.Tensor, decoder: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each ground-truth feature, the max cosine to any decoder row and that row's index."""
    features = features / features.norm(dim=1, keepdim=True)
    decoder = decoder / decoder.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cosines = features @ decoder.T
    best, index = cosines.max(dim=1)
    return best, index


def recovery_summary(recovery: torch.Tensor, threshold: float) -> dict[str, float]:
    recovered = recovery >= threshold
    return {
        "recovered_count": int(recovered.sum()),
        "recovered_fraction": float(recovered.float().mean()),
        "mean_max_cosine": float(recovery.mean()),
        "median_max_cosine": float(recovery.median()),
    }


def recovery_table(
    recovery: torch.Tensor, best_latent: torch.Tensor, probabilities: torch.Tensor
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature": range(len(recovery)),
            "probability": probabilities.double().numpy(),
            "max_cosine": recovery.double().numpy(),
            "best_latent": best_latent.numpy(),
        }
    )


# ------------------------------------------------ SynthSAEBench's matched-pair metrics
# The metrics of SAELens's synthetic benchmark (sae_lens.synthetic.evals), computed here
# without importing SAELens and checked equal to its functions in tests/test_saelens.py.
def _abs_cosines(decoder: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """|cos| between every decoder row and every ground-truth feature, [d_sae, features]."""
    decoder = decoder / decoder.norm(dim=1, keepdim=True).clamp_min(1e-8)
    features = features / features.norm(dim=1, keepdim=True).clamp_min(1e-8)
    return (decoder @ features.T).abs()


def mean_correlation_coefficient(decoder: torch.Tensor, features: torch.Tensor) -> float:
    """MCC: decoder rows matched one-to-one to ground-truth features by the Hungarian
    algorithm on |cos|, then the mean |cos| of the matched pairs (1 for the true
    dictionary in any order and sign)."""
    from scipy.optimize import linear_sum_assignment

    cosines = _abs_cosines(decoder.double(), features.double())
    rows, columns = linear_sum_assignment(1 - cosines.numpy())
    return float(cosines[rows, columns].mean())


def feature_uniqueness(decoder: torch.Tensor, features: torch.Tensor) -> float:
    """Distinct best-matching ground-truth features over the number of latents."""
    best = _abs_cosines(decoder, features).argmax(dim=1)
    return len(best.unique()) / decoder.shape[0]


class LatentClassification:
    """Streaming counts for SynthSAEBench's per-latent classification: each latent as a
    detector of its best-matching ground-truth feature (by decoder |cos|).

    Counted from the sparse code and the active (sample, feature) pairs: a true positive
    is a firing (sample, latent) whose latent's feature is active in that sample. The
    counts are those of the dense (samples x latents) masks, without building them (at
    8,192 x 3,200 the masks cost ~4x the rest of a synthetic evaluation)."""

    def __init__(self, decoder: torch.Tensor, features: torch.Tensor) -> None:
        self.num_features = features.shape[0]
        self.best = _abs_cosines(decoder, features).argmax(dim=1)
        self.tp, self.fires, self.truth = (
            torch.zeros(decoder.shape[0], dtype=torch.float64) for _ in range(3)
        )
        self.samples = 0

    def update(
        self, code: SparseCode, sample_index: torch.Tensor, feature_index: torch.Tensor
    ) -> None:
        num_latents, num_features = len(self.best), self.num_features
        active = torch.unique(sample_index * num_features + feature_index)  # sorted keys
        firing = code.values != 0
        rows, latents = code.rows[firing], code.latents[firing]
        hit = torch.isin(rows * num_features + self.best[latents], active)
        self.tp += torch.bincount(latents[hit], minlength=num_latents)
        self.fires += torch.bincount(latents, minlength=num_latents)
        self.truth += torch.bincount(active % num_features, minlength=num_features)[self.best]
        self.samples += code.batch_size

    def summary(self) -> dict[str, float]:
        """Mean precision, recall, F1 and accuracy over latents."""
        tp = self.tp
        fp, fn = self.fires - tp, self.truth - tp
        tn = self.samples - tp - fp - fn
        precision = torch.where(tp + fp > 0, tp / (tp + fp), torch.zeros_like(tp))
        recall = torch.where(tp + fn > 0, tp / (tp + fn), torch.zeros_like(tp))
        f1 = torch.where(
            precision + recall > 0,
            2 * precision * recall / (precision + recall),
            torch.zeros_like(tp),
        )
        accuracy = (tp + tn) / (tp + fp + fn + tn).clamp_min(1e-8)
        return {
            "latent_precision": float(precision.mean()),
            "latent_recall": float(recall.mean()),
            "latent_f1": float(f1.mean()),
            "latent_accuracy": float(accuracy.mean()),
        }


@torch.no_grad()
def latent_classification(
    sae: SparseAutoencoder, source, num_samples: int, batch_size: int
) -> dict[str, float]:
    """`LatentClassification` of an SAE on held-out samples of a synthetic source
    (`source.sample` gives the active features)."""
    counts = LatentClassification(sae.W_dec.detach(), source.truth.features)
    for step in range(max(1, num_samples // batch_size)):
        x, sample_index, feature_index = source.sample(step, batch_size)
        counts.update(sae.encode_sparse(x), sample_index, feature_index)
    return counts.summary()


@torch.no_grad()
def synthetic_held_out_metrics(
    sae: SparseAutoencoder, source, num_samples: int, batch_size: int, classification: bool
) -> dict[str, float]:
    """`reconstruction_metrics` and (unless `classification` is False) the per-latent
    classification in one pass over a synthetic source's held-out samples, each batch
    encoded once (the encoding is most of an evaluation's cost)."""
    stats = ReconstructionStats(sae.d_sae)
    counts = (
        LatentClassification(sae.W_dec.detach(), source.truth.features) if classification else None
    )
    for step in range(max(1, num_samples // batch_size)):
        x, sample_index, feature_index = source.sample(step, batch_size)
        code = sae.encode_sparse(x)
        stats.update(x, sae.decode_sparse(code), code.latents[code.values > 0])
        if counts is not None:
            counts.update(code, sample_index, feature_index)
    return {**stats.summary(), **(counts.summary() if counts is not None else {})}


def matched_pair_metrics(decoder: torch.Tensor, features: torch.Tensor) -> dict[str, float]:
    """SynthSAEBench's MCC and uniqueness of a decoder against the ground truth."""
    return {
        "mcc": mean_correlation_coefficient(decoder, features),
        "uniqueness": feature_uniqueness(decoder, features),
    }
