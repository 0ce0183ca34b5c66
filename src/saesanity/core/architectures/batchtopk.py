"""BatchTopK SAE (Bussmann et al. 2024): the k x B largest activations of the batch in
training; at inference a threshold, estimated in training as an EMA of the smallest kept
activation (SAELens saves it as a JumpReLU with one threshold)."""

from __future__ import annotations

from pathlib import Path

import torch

from saesanity.core.architectures.topk import TopKFamilySAE
from saesanity.core.sae import TrainForward
from saesanity.core.sparse_ops import SparseCode, select_above, select_batch_topk


class BatchTopKSAE(TopKFamilySAE):
    architecture = "batchtopk"
    saelens_architecture = "jumprelu"
    estimates_threshold = True

    def __init__(
        self, d_in: int, d_sae: int, k: int | None = None, jumprelu_bandwidth: float = 0.001
    ) -> None:
        super().__init__(d_in, d_sae, k=k, jumprelu_bandwidth=jumprelu_bandwidth)
        # Estimated during training; -1 means "not yet estimated".
        self.register_buffer("inference_threshold", torch.tensor(-1.0, dtype=torch.float64))

    def select_for_training(
        self, x_centered: torch.Tensor, batch_topk_hint: float | None
    ) -> SparseCode:
        W_enc, b_enc = self.W_enc.detach(), self.b_enc.detach()
        return select_batch_topk(x_centered, W_enc, b_enc, self.k, batch_topk_hint)

    def select(self, x_centered: torch.Tensor) -> SparseCode:
        if self.inference_threshold.item() < 0:
            return select_batch_topk(x_centered, self.W_enc, self.b_enc, self.k)
        threshold = self.inference_threshold.float()
        return select_above(x_centered, self.W_enc, self.b_enc, threshold)

    @torch.no_grad()
    def after_step(self, out: TrainForward, config, step: int, state) -> None:
        positive = out.code.values.detach()
        positive = positive[positive > 0]
        if not positive.numel():
            return
        cutoff = float(positive.min())
        state.batch_topk_cutoff = cutoff  # the next batch's selection starts from it
        if step >= config.threshold_start_step:
            theta = self.inference_threshold
            if theta.item() < 0:
                theta.fill_(cutoff)
            else:
                theta.mul_(config.threshold_ema).add_((1 - config.threshold_ema) * cutoff)

    def saelens_threshold(self, where: Path) -> torch.Tensor:
        threshold = float(self.inference_threshold)
        if threshold < 0:
            raise ValueError(
                f"{where}: this {self.architecture} SAE's inference threshold was never "
                "estimated (training ended before threshold_start_step); exported with "
                "threshold 0 it would be a ReLU. Lower threshold_start_step or train longer"
            )
        return torch.full((self.d_sae,), threshold)
