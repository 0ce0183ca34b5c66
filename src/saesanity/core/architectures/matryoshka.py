"""Matryoshka-BatchTopK SAE (Bussmann et al. 2025): one global BatchTopK whose latents
are split into nested groups; the loss is the mean reconstruction error of the nested
prefixes (groups 0..g for every g)."""

from __future__ import annotations

import torch

from saesanity.core.architectures.batchtopk import BatchTopKSAE
from saesanity.core.sae import TrainForward
from saesanity.core.sparse_ops import SparseCode, sparse_decode


def matryoshka_group_sizes(d_sae: int, fractions: list[float]) -> list[int]:
    """int(f * d_sae) per group, the remainder going to the last group (dictionary_learning)."""
    sizes = [int(f * d_sae) for f in fractions]
    sizes[-1] += d_sae - sum(sizes)
    return sizes


class MatryoshkaSAE(BatchTopKSAE):
    architecture = "matryoshka"

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        k: int | None = None,
        jumprelu_bandwidth: float = 0.001,
        group_fractions: list[float] | None = None,
    ) -> None:
        super().__init__(d_in, d_sae, k=k, jumprelu_bandwidth=jumprelu_bandwidth)
        self.group_sizes = matryoshka_group_sizes(d_sae, group_fractions or [0.5, 0.3, 0.2])

    def decode_for_training(self, code: SparseCode) -> tuple[torch.Tensor, list[torch.Tensor]]:
        prefixes = self.prefix_reconstructions(code)
        return prefixes[-1], prefixes

    def prefix_reconstructions(self, code: SparseCode) -> list[torch.Tensor]:
        """b_dec + contributions of groups 0..g, for every group g."""
        boundaries = torch.tensor(self.group_sizes, device=code.latents.device).cumsum(0)
        group_of_entry = torch.bucketize(code.latents, boundaries, right=True)
        partial = self.b_dec.expand(code.batch_size, -1)
        prefixes = []
        for group in range(len(self.group_sizes)):
            keep = group_of_entry == group
            sub = code.select(keep)
            partial = partial + sparse_decode(sub.values, self.W_dec, sub)
            prefixes.append(partial)
        return prefixes

    def reconstruction_loss(self, out: TrainForward, mse: torch.Tensor) -> torch.Tensor:
        # Mean over the nested prefixes (the last prefix is the full reconstruction).
        prefix_losses = [
            (out.x_scaled - p).pow(2).sum(1).mean() for p in out.prefix_reconstructions
        ]
        return torch.stack(prefix_losses).mean()
