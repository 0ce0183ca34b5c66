"""Evaluation metrics shared by the synthetic and real-activation studies."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from saesanity.data import ActivationSource
from saesanity.sae import SparseAutoencoder


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
