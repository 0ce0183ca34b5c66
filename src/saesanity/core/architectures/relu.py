"""ReLU SAE with an L1 penalty weighted by decoder norms (Anthropic's April 2024 update;
SAELens's "standard")."""

from __future__ import annotations

import torch

from saesanity.core.sae import SparseAutoencoder, TrainForward
from saesanity.core.sparse_ops import SparseCode, select_above


class ReLUSAE(SparseAutoencoder):
    architecture = "relu"
    saelens_architecture = "standard"
    starts_dense = True

    def select_for_training(
        self, x_centered: torch.Tensor, batch_topk_hint: float | None
    ) -> SparseCode:
        return self.select_positive(x_centered, self.W_enc.detach(), self.b_enc.detach())

    def select(self, x_centered: torch.Tensor) -> SparseCode:
        return self.select_positive(x_centered, self.W_enc, self.b_enc)

    @staticmethod
    def select_positive(x_centered, W_enc, b_enc) -> SparseCode:
        return select_above(x_centered, W_enc, b_enc, torch.tensor(0.0))

    def sparsity_loss(
        self, out: TrainForward, config, step: int, dead: torch.Tensor
    ) -> tuple[str, torch.Tensor, float]:
        # L1 of activations x decoder row norms, warmed up linearly over l1_warmup_steps.
        warm = min(1.0, (step + 1) / max(1, config.l1_warmup_steps))
        batch_size = out.x_scaled.shape[0]
        l1 = (out.values * out.per_latent(self.W_dec.norm(dim=1))).sum() / batch_size
        return "l1", l1, config.l1_coefficient * warm
