"""One sparse-autoencoder module for every architecture the study uses.

All architectures share the parameterisation

    pre   = (x * s - b_dec) @ W_enc.T + b_enc        (s: input scale, stored)
    f     = sigma(pre)                                (architecture-specific)
    x_hat = (f @ W_dec + b_dec) / s

with W_enc and W_dec both stored as (d_sae, d_in), one row per latent, so a
"decoder direction" is a row of W_dec. Subtracting b_dec before the encoder is
the convention of SAELens and dictionary_learning's TopK family; we use it for
every architecture (dictionary_learning's JumpReLU skips it) so the variants
differ only in sigma.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from saesanity.core.sparse_ops import (
    SparseCode,
    gathered_preactivations,
    select_above,
    select_batch_topk,
    select_topk,
    sparse_decode,
)

ARCHITECTURES = ("relu", "topk", "batchtopk", "jumprelu", "matryoshka")
TOPK_FAMILY = ("topk", "batchtopk", "matryoshka")


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


def step(pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Elementwise Heaviside step with the L0 pseudo-derivative."""
    return _Step.apply(pre, threshold, bandwidth)


# ReLU and JumpReLU start dense (half the latents active); above this fraction of
# active entries a plain dense forward/backward is faster than the sparse kernels.
DENSE_FRACTION = 0.05


@dataclass
class TrainForward:
    """What one training forward pass hands to the loss.

    `values` are the differentiable activations: either of the sparse entries
    (`latents` gives each entry's latent) or a dense (B x d_sae) matrix
    (`latents` is None). `pre_values` are the matching pre-activations (the
    JumpReLU L0 term needs them). `code` is the selected sparse code (TopK
    family); `prefix_reconstructions` are Matryoshka's nested reconstructions.
    """

    x_scaled: torch.Tensor
    x_hat: torch.Tensor
    values: torch.Tensor
    latents: torch.Tensor | None
    pre_values: torch.Tensor
    l0_per_sample: torch.Tensor
    fired: torch.Tensor
    code: SparseCode | None = None
    prefix_reconstructions: list[torch.Tensor] | None = None

    def per_latent(self, tensor: torch.Tensor) -> torch.Tensor:
        """A per-latent (d_sae,) tensor laid out like `values`."""
        return tensor[self.latents] if self.latents is not None else tensor.expand_as(self.values)


def matryoshka_group_sizes(d_sae: int, fractions: list[float]) -> list[int]:
    """int(f * d_sae) per group, the remainder going to the last group (dictionary_learning)."""
    sizes = [int(f * d_sae) for f in fractions]
    sizes[-1] += d_sae - sum(sizes)
    return sizes


class SparseAutoencoder(nn.Module):
    def __init__(
        self,
        d_in: int,
        d_sae: int,
        architecture: str,
        k: int | None = None,
        group_fractions: list[float] | None = None,
        jumprelu_bandwidth: float = 0.001,
        jumprelu_threshold_init: float = 0.001,
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}"
            )
        if architecture in TOPK_FAMILY and (k is None or k < 1):
            raise ValueError(f"architecture {architecture!r} needs k >= 1, got {k!r}")
        self.d_in, self.d_sae, self.architecture, self.k = d_in, d_sae, architecture, k
        self.jumprelu_bandwidth = jumprelu_bandwidth
        self.W_enc = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("input_scale", torch.tensor(1.0))
        if architecture == "jumprelu":
            self.threshold = nn.Parameter(torch.full((d_sae,), float(jumprelu_threshold_init)))
        if architecture in ("batchtopk", "matryoshka"):
            # Estimated during training; -1 means "not yet estimated".
            self.register_buffer("inference_threshold", torch.tensor(-1.0, dtype=torch.float64))
        self.group_sizes: list[int] | None = None
        if architecture == "matryoshka":
            self.group_sizes = matryoshka_group_sizes(d_sae, group_fractions or [0.5, 0.3, 0.2])

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def initialise(
        self, directions: torch.Tensor, b_dec: torch.Tensor, encoder_norm: float = 1.0
    ) -> None:
        """Decoder rows = unit `directions`, encoder = decoder transpose (rows scaled to
        `encoder_norm`), b_enc = 0."""
        directions = directions / directions.norm(dim=1, keepdim=True)
        self.W_dec.copy_(directions)
        self.W_enc.copy_(directions * encoder_norm)
        self.b_enc.zero_()
        self.b_dec.copy_(b_dec)

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    # -------------------------------------------------------------- training
    def forward_train(self, x: torch.Tensor, batch_topk_hint: float | None = None) -> TrainForward:
        """Training-mode forward on raw inputs `x` (scaled internally).

        Every architecture runs sparse: a no-grad dense pass selects the entries
        that can be non-zero (or, for JumpReLU, can have a gradient), then only
        those entries are recomputed with autograd and decoded. This is exact:
        the entries left out have zero activation and zero gradient.
        """
        x_scaled = x * self.input_scale
        x_centered = x_scaled - self.b_dec
        W_enc, b_enc = self.W_enc.detach(), self.b_enc.detach()
        if self.architecture == "topk":
            code = select_topk(x_centered.detach(), W_enc, b_enc, self.k)
        elif self.architecture in ("batchtopk", "matryoshka"):
            code = select_batch_topk(x_centered.detach(), W_enc, b_enc, self.k, batch_topk_hint)
        elif self.architecture == "jumprelu":
            # Entries within half a bandwidth below the threshold get threshold gradients.
            lower = self.threshold.detach() - self.jumprelu_bandwidth / 2
            code = select_above(x_centered.detach(), W_enc, b_enc, lower)
        else:
            code = select_above(x_centered.detach(), W_enc, b_enc, torch.tensor(0.0))
        if self.architecture in ("relu", "jumprelu") and code.values.numel() > DENSE_FRACTION * (
            code.batch_size * code.num_latents
        ):
            return self._dense_forward_train(x_scaled, x_centered)
        pre_values = gathered_preactivations(x_centered, self.W_enc, self.b_enc, code)
        if self.architecture == "jumprelu":
            values = jumprelu(pre_values, self.threshold[code.latents], self.jumprelu_bandwidth)
        else:
            values = pre_values.relu()
        code = SparseCode(code.rows, code.latents, values, code.batch_size, code.num_latents)
        prefixes = None
        if self.architecture == "matryoshka":
            prefixes = self._prefix_reconstructions(code)
            x_hat = prefixes[-1]
        else:
            x_hat = sparse_decode(code.values, self.W_dec, code) + self.b_dec
        return TrainForward(
            x_scaled, x_hat, values, code.latents, pre_values, code.l0_per_sample(), code.fired(),
            code=code, prefix_reconstructions=prefixes,
        )  # fmt: skip

    def _dense_forward_train(
        self, x_scaled: torch.Tensor, x_centered: torch.Tensor
    ) -> TrainForward:
        """Plain dense ReLU / JumpReLU forward, for the dense early phase of training."""
        pre = F.linear(x_centered, self.W_enc, self.b_enc)
        if self.architecture == "jumprelu":
            values = jumprelu(pre, self.threshold.expand_as(pre), self.jumprelu_bandwidth)
        else:
            values = F.relu(pre)
        x_hat = values @ self.W_dec + self.b_dec
        active = values.detach() > 0
        return TrainForward(
            x_scaled, x_hat, values, None, pre, active.sum(1).float(), active.any(0)
        )

    def _prefix_reconstructions(self, code: SparseCode) -> list[torch.Tensor]:
        """b_dec + contributions of groups 0..g, for every group g (Matryoshka)."""
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

    # ------------------------------------------------------------- inference
    @torch.no_grad()
    def encode_sparse(self, x: torch.Tensor) -> SparseCode:
        """Inference-mode code of raw inputs `x` (BatchTopK uses its threshold)."""
        x_centered = x * self.input_scale - self.b_dec
        W_enc, b_enc = self.W_enc, self.b_enc
        if self.architecture == "topk":
            return select_topk(x_centered, W_enc, b_enc, self.k)
        if self.architecture in ("batchtopk", "matryoshka"):
            if self.inference_threshold.item() < 0:
                return select_batch_topk(x_centered, W_enc, b_enc, self.k)
            return select_above(x_centered, W_enc, b_enc, self.inference_threshold.float())
        if self.architecture == "jumprelu":
            return select_above(x_centered, W_enc, b_enc, self.threshold)
        return select_above(x_centered, W_enc, b_enc, torch.tensor(0.0))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense (B x d_sae) latent activations of raw inputs."""
        return self.encode_sparse(x).dense()

    @torch.no_grad()
    def decode_sparse(self, code: SparseCode) -> torch.Tensor:
        x_hat = F.embedding_bag(
            code.latents, self.W_dec, code.offsets(), mode="sum", per_sample_weights=code.values
        )
        return (x_hat + self.b_dec) / self.input_scale

    @torch.no_grad()
    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        return (acts @ self.W_dec + self.b_dec) / self.input_scale

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of raw inputs, in input units."""
        return self.decode_sparse(self.encode_sparse(x))

    # -------------------------------------------------------------- metadata
    def architecture_config(self) -> dict:
        return {
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "architecture": self.architecture,
            "k": self.k,
            "group_sizes": self.group_sizes,
            "jumprelu_bandwidth": self.jumprelu_bandwidth,
        }


def unit_sphere_directions(num: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """`num` directions uniform on S^(dim-1) (normalised isotropic Gaussians)."""
    directions = torch.randn(num, dim, generator=generator)
    return directions / directions.norm(dim=1, keepdim=True)


def covariance_directions(
    num: int, covariance: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """`num` unit directions from N(0, covariance), the study's `cov` scheme."""
    dim = covariance.shape[0]
    # Eigen-decomposition instead of Cholesky: activation covariances can be singular.
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance.double())
    root = eigenvectors * eigenvalues.clamp_min(0).sqrt()
    directions = (torch.randn(num, dim, generator=generator).double() @ root.T).float()
    return directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12)


def project_to_caps(directions: torch.Tensor, anchors: torch.Tensor, tau: float) -> torch.Tensor:
    """Project unit rows onto the caps cos(d, anchor) >= tau (rows already inside are kept).

    A row outside its cap is replaced by the closest point of the cap boundary:
    tau * anchor + sqrt(1 - tau^2) * u, u the unit component of d orthogonal to
    the anchor. Rows and anchors are assumed unit-norm.
    """
    cosine = (directions * anchors).sum(1, keepdim=True)
    outside = cosine < tau
    orthogonal = directions - cosine * anchors
    # A row (nearly) antipodal to its anchor has no usable orthogonal part; any
    # orthogonal unit vector is then as close, so take one built from the anchor.
    degenerate = orthogonal.norm(dim=1, keepdim=True) < 1e-3
    if degenerate.any():
        orthogonal = torch.where(degenerate, torch.roll(anchors, 1, dims=1), orthogonal)
    # Gram-Schmidt twice: one pass leaves float32 round-off along the anchor.
    for _ in range(2):
        orthogonal = orthogonal - (orthogonal * anchors).sum(1, keepdim=True) * anchors
        orthogonal = orthogonal / orthogonal.norm(dim=1, keepdim=True).clamp_min(1e-12)
    boundary = tau * anchors + math.sqrt(max(0.0, 1.0 - tau * tau)) * orthogonal
    return torch.where(outside, boundary, directions)
