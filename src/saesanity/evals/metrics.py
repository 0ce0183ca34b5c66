"""Evaluation metrics shared by the synthetic and real-activation studies."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from saesanity.core.data import ActivationSource
from saesanity.core.sae import SparseAutoencoder


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


@torch.no_grad()
def latent_classification(
    sae: SparseAutoencoder, source, num_samples: int, batch_size: int
) -> dict[str, float]:
    """Each latent as a detector of its best-matching ground-truth feature (by decoder
    |cos|): mean precision, recall, F1 and accuracy over latents, on held-out samples of
    a synthetic source (`source.sample` gives the active features).

    Counted from the sparse code and the active (sample, feature) pairs: a true positive
    is a firing (sample, latent) whose latent's feature is active in that sample. The
    counts are those of the dense (samples x latents) masks, without building them (at
    8,192 x 3,200 the masks cost ~4x the rest of a synthetic evaluation)."""
    num_latents, num_features = sae.d_sae, source.truth.num_features
    best = _abs_cosines(sae.W_dec.detach(), source.truth.features).argmax(dim=1)
    tp, fires, truth = (torch.zeros(num_latents, dtype=torch.float64) for _ in range(3))
    samples = 0
    for step in range(max(1, num_samples // batch_size)):
        x, sample_index, feature_index = source.sample(step, batch_size)
        active = torch.unique(sample_index * num_features + feature_index)  # sorted keys
        code = sae.encode_sparse(x)
        firing = code.values != 0
        rows, latents = code.rows[firing], code.latents[firing]
        hit = torch.isin(rows * num_features + best[latents], active)
        tp += torch.bincount(latents[hit], minlength=num_latents)
        fires += torch.bincount(latents, minlength=num_latents)
        truth += torch.bincount(active % num_features, minlength=num_features)[best]
        samples += batch_size
    fp, fn = fires - tp, truth - tp
    tn = samples - tp - fp - fn
    precision = torch.where(tp + fp > 0, tp / (tp + fp), torch.zeros_like(tp))
    recall = torch.where(tp + fn > 0, tp / (tp + fn), torch.zeros_like(tp))
    f1 = torch.where(
        precision + recall > 0, 2 * precision * recall / (precision + recall), torch.zeros_like(tp)
    )
    accuracy = (tp + tn) / (tp + fp + fn + tn).clamp_min(1e-8)
    return {
        "latent_precision": float(precision.mean()),
        "latent_recall": float(recall.mean()),
        "latent_f1": float(f1.mean()),
        "latent_accuracy": float(accuracy.mean()),
    }


def synthsaebench_metrics(
    sae: SparseAutoencoder,
    source,
    num_samples: int,
    batch_size: int,
    classification: bool = True,
) -> dict[str, float]:
    """MCC, uniqueness and (unless `classification` is False: most of the cost) the
    per-latent classification metrics of one SAE."""
    decoder = sae.W_dec.detach()
    metrics = {
        "mcc": mean_correlation_coefficient(decoder, source.truth.features),
        "uniqueness": feature_uniqueness(decoder, source.truth.features),
    }
    if classification:
        metrics.update(latent_classification(sae, source, num_samples, batch_size))
    return metrics
