"""TopK SAE (Gao et al. 2024): the k largest pre-activations of each sample, with the
AuxK loss that revives dead latents (shared by the BatchTopK family)."""

from __future__ import annotations

import torch

from saesanity.core.sae import SparseAutoencoder, TrainForward
from saesanity.core.sparse_ops import (
    SparseCode,
    gathered_preactivations,
    select_topk,
    select_topk_positive,
    sparse_decode,
)

AUXK_VALUES = ("post_relu", "pre_activation")


def auxk_loss(
    sae: SparseAutoencoder,
    out: TrainForward,
    dead: torch.Tensor,
    k_aux: int,
    values: str = "post_relu",
) -> torch.Tensor:
    """AuxK: the top-k_aux dead latents reconstruct the main reconstruction's residual.

    Normalised by the residual's variance (dictionary_learning); decoded without b_dec
    (sparsify issue #132); the residual is detached. `values` says what the dead
    latents reconstruct with:
    - "post_relu" (dictionary_learning): their ReLU'd pre-activations, so a dead latent
      whose pre-activations are all negative gets no gradient and stays dead;
    - "pre_activation" (SAELens's `calculate_topk_aux_acts`): the top-k_aux raw
      pre-activations, negative ones included, so every dead latent that ranks among a
      sample's top k_aux gets a gradient.

    Sparse like the main forward: a no-grad pass picks each sample's top-k_aux dead
    latents (post-ReLU: only the positive ones, a ReLU'd zero adds nothing), then only
    those entries are recomputed with autograd, so the backward costs O(B k_aux d)
    however many latents are dead (a dense version pays O(B n_dead d) twice more, and
    most of a step once most latents are dead; bench/auxk.py).
    """
    if values not in AUXK_VALUES:
        raise ValueError(f"auxk_values = {values!r}: expected one of {AUXK_VALUES}")
    dead_latents = dead.nonzero().squeeze(1)
    k_aux = min(k_aux, len(dead_latents))
    if k_aux == 0:
        return out.x_hat.new_zeros(())
    x_centered = out.x_scaled - sae.b_dec
    dead_encoder = (x_centered.detach(), sae.W_enc.detach()[dead_latents],
                    sae.b_enc.detach()[dead_latents])  # fmt: skip
    if values == "post_relu":
        among_dead = select_topk_positive(*dead_encoder, k_aux)
    else:
        among_dead = select_topk(*dead_encoder, k_aux, relu=False)
    code = SparseCode(
        among_dead.rows, dead_latents[among_dead.latents], among_dead.values,
        among_dead.batch_size, sae.W_enc.shape[0],
    )  # fmt: skip
    values = gathered_preactivations(x_centered, sae.W_enc, sae.b_enc, code)
    residual = (out.x_scaled - out.x_hat).detach()
    residual_hat = sparse_decode(values, sae.W_dec, code)
    error = (residual - residual_hat).pow(2).sum(1).mean()
    variance = (residual - residual.mean(0)).pow(2).sum(1).mean().clamp_min(1e-12)
    return error / variance


class TopKFamilySAE(SparseAutoencoder):
    """Keeps k latents (per sample or per batch); AuxK revives the dead ones."""

    needs_k = True

    def sparsity_loss(
        self, out: TrainForward, config, step: int, dead: torch.Tensor
    ) -> tuple[str, torch.Tensor, float]:
        aux = auxk_loss(self, out, dead, config.auxk_k or self.d_in // 2, config.auxk_values)
        return "auxk", aux, config.auxk_coefficient


class TopKSAE(TopKFamilySAE):
    architecture = "topk"
    saelens_architecture = "topk"

    def select_for_training(
        self, x_centered: torch.Tensor, batch_topk_hint: float | None
    ) -> SparseCode:
        return select_topk(x_centered, self.W_enc.detach(), self.b_enc.detach(), self.k)

    def select(self, x_centered: torch.Tensor) -> SparseCode:
        return select_topk(x_centered, self.W_enc, self.b_enc, self.k)

    def saelens_cfg(self) -> dict:
        return {"k": self.k}
