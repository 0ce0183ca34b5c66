"""JumpReLU SAE (Rajamanoharan et al. 2024): a learned threshold per latent, trained
through rectangle-kernel pseudo-derivatives, with the target-L0 loss c (L0 / k - 1)^2 of
dictionary_learning (k is the target L0), which reaches the target without tuning a
coefficient."""

from __future__ import annotations

import torch
from torch import nn

from saesanity.core.sae import SparseAutoencoder, TrainForward, gather_latents
from saesanity.core.sparse_ops import SparseCode, select_above


def _rectangle(z: torch.Tensor) -> torch.Tensor:
    return ((z > -0.5) & (z < 0.5)).to(z.dtype)


class _JumpReLU(torch.autograd.Function):
    """f = pre * H(pre - theta), elementwise, with the rectangle-kernel pseudo-derivative.

    d f / d pre   = H(pre - theta)
    d f / d theta = -(theta / eps) * rect((pre - theta) / eps)
    (Rajamanoharan et al. 2024; dictionary_learning trainers/jumprelu.py.)
    """

    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad):
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_pre = grad * (pre > threshold)
        grad_threshold = -(threshold / eps) * _rectangle((pre - threshold) / eps) * grad
        return grad_pre, grad_threshold, None


class _Step(torch.autograd.Function):
    """H(pre - theta), elementwise, with d/d theta = -(1/eps) * rect((pre - theta)/eps)
    and no gradient to pre: the L0 term moves thresholds only. Applied to pre,
    not to f (dictionary_learning issue #55)."""

    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad):
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_threshold = -(1.0 / eps) * _rectangle((pre - threshold) / eps) * grad
        return None, grad_threshold, None


def jumprelu(pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Elementwise JumpReLU; `threshold` has the shape of `pre` (gather it per entry)."""
    return _JumpReLU.apply(pre, threshold, bandwidth)


def step_function(pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Elementwise Heaviside step with the L0 pseudo-derivative."""
    return _Step.apply(pre, threshold, bandwidth)


class JumpReLUSAE(SparseAutoencoder):
    architecture = "jumprelu"
    saelens_architecture = "jumprelu"
    starts_dense = True

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        k: int | None = None,
        jumprelu_bandwidth: float = 0.001,
        jumprelu_threshold_init: float = 0.001,
    ) -> None:
        super().__init__(d_in, d_sae, k=k, jumprelu_bandwidth=jumprelu_bandwidth)
        self.threshold = nn.Parameter(torch.full((d_sae,), float(jumprelu_threshold_init)))

    def select_for_training(
        self, x_centered: torch.Tensor, batch_topk_hint: float | None
    ) -> SparseCode:
        # Entries within half a bandwidth below the threshold get threshold gradients.
        lower = self.threshold.detach() - self.jumprelu_bandwidth / 2
        return select_above(x_centered, self.W_enc.detach(), self.b_enc.detach(), lower)

    def select(self, x_centered: torch.Tensor) -> SparseCode:
        return select_above(x_centered, self.W_enc, self.b_enc, self.threshold)

    def activation(self, pre: torch.Tensor, latents: torch.Tensor | None) -> torch.Tensor:
        threshold = (
            self.threshold.expand_as(pre)
            if latents is None
            else gather_latents(self.threshold, latents)
        )
        return jumprelu(pre, threshold, self.jumprelu_bandwidth)

    def sparsity_loss(
        self, out: TrainForward, config, step: int, dead: torch.Tensor
    ) -> tuple[str, torch.Tensor, float]:
        warm = min(1.0, (step + 1) / max(1, config.sparsity_warmup_steps))
        batch_size = out.x_scaled.shape[0]
        threshold = out.per_latent(self.threshold)
        l0 = step_function(out.pre_values, threshold, config.jumprelu_bandwidth).sum() / batch_size
        sparsity = (l0 / config.k - 1).pow(2)
        return "sparsity", sparsity, config.target_l0_coefficient * warm

    @torch.no_grad()
    def after_step(self, out: TrainForward, config, step: int, state) -> None:
        self.threshold.clamp_(min=0.0)

    def saelens_threshold(self, where) -> torch.Tensor:
        return self.threshold.detach().clone()
