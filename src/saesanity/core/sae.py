"""The sparse autoencoder: what every architecture the study uses shares.

All architectures share the parameterisation

    pre   = (x * s - b_dec) @ W_enc.T + b_enc        (s: input scale, stored)
    f     = sigma(pre)                                (architecture-specific)
    x_hat = (f @ W_dec + b_dec) / s

with W_enc and W_dec both stored as (d_sae, d_in), one row per latent, so a
"decoder direction" is a row of W_dec. Subtracting b_dec before the encoder is
the convention of SAELens and dictionary_learning's TopK family; we use it for
every architecture (dictionary_learning's JumpReLU skips it) so the variants
differ only in sigma. Each architecture is a subclass in `saesanity.core.architectures`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from saesanity.core.sparse_ops import SparseCode, gathered_preactivations, sparse_decode

# Dense-start architectures (ReLU, JumpReLU: half the latents active at first) switch to
# a plain dense forward/backward above this fraction of active entries, where it is faster
# than the sparse kernels.
DENSE_FRACTION = 0.05


def gather_latents(tensor: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """tensor[latents] for a per-latent tensor, with a reproducible gradient: the
    backward of `tensor[latents]` (index_put_ with accumulation) adds in a
    thread-dependent order on CPU once there are ~1M entries, so two identical runs
    drift apart; index_select's backward (index_add_) does not."""
    return tensor.index_select(0, latents)


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
        if self.latents is None:
            return tensor.expand_as(self.values)
        return gather_latents(tensor, self.latents)


class SparseAutoencoder(nn.Module):
    """The parameters and computations every architecture shares. An architecture is a
    subclass (one module each in `saesanity.core.architectures`, registered by name there)
    that says which latents are active in training and at inference, its activation, its
    sparsity loss and what it updates after each optimiser step."""

    architecture: ClassVar[str] = ""
    saelens_architecture: ClassVar[str] = ""  # cfg.json "architecture" of the export
    needs_k: ClassVar[bool] = False  # keeps k latents (TopK family)
    # Estimates an inference threshold in training (BatchTopK family).
    estimates_threshold: ClassVar[bool] = False
    # Starts dense (about half the latents active): above DENSE_FRACTION active entries a
    # plain dense forward/backward is faster than the sparse kernels.
    starts_dense: ClassVar[bool] = False

    def __init__(
        self, d_in: int, d_sae: int, k: int | None = None, jumprelu_bandwidth: float = 0.001
    ) -> None:
        super().__init__()
        if self.needs_k and (k is None or k < 1):
            raise ValueError(f"architecture {self.architecture!r} needs k >= 1, got {k!r}")
        self.d_in, self.d_sae, self.k = d_in, d_sae, k
        # Recorded for every architecture (sae.json); only JumpReLU uses it.
        self.jumprelu_bandwidth = jumprelu_bandwidth
        self.W_enc = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("input_scale", torch.tensor(1.0))
        self.group_sizes: list[int] | None = None

    # ------------------------------------------------- what an architecture says
    def select_for_training(
        self, x_centered: torch.Tensor, batch_topk_hint: float | None
    ) -> SparseCode:
        """The entries that can be non-zero (or have a gradient) in training; no grad."""
        raise NotImplementedError

    def select(self, x_centered: torch.Tensor) -> SparseCode:
        """The inference-mode code of centred, scaled inputs; no grad."""
        raise NotImplementedError

    def activation(self, pre: torch.Tensor, latents: torch.Tensor | None) -> torch.Tensor:
        """Activations of pre-activations `pre` (entries of `latents`, or dense when None)."""
        return pre.relu()

    def decode_for_training(
        self, code: SparseCode
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """The reconstruction (and Matryoshka's nested prefix reconstructions)."""
        return sparse_decode(code.values, self.W_dec, code) + self.b_dec, None

    def reconstruction_loss(self, out: TrainForward, mse: torch.Tensor) -> torch.Tensor:
        """The reconstruction term of the loss; `mse` is the full reconstruction's."""
        return mse

    def sparsity_loss(
        self, out: TrainForward, config, step: int, dead: torch.Tensor
    ) -> tuple[str, torch.Tensor, float]:
        """(name, term, weight): the loss adds weight x term. `config` is the TrainConfig."""
        raise NotImplementedError

    @torch.no_grad()
    def after_step(self, out: TrainForward, config, step: int, state) -> None:
        """Updates after each optimiser step (thresholds); `state` is the TrainState."""

    def saelens_threshold(self, where: Path) -> torch.Tensor | None:
        """The `threshold` tensor of the SAELens export, if the architecture has one."""
        return None

    def saelens_cfg(self) -> dict:
        """Architecture-specific cfg.json entries of the SAELens export."""
        return {}

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
    def forward_train(
        self,
        x: torch.Tensor,
        batch_topk_hint: float | None = None,
        active_fraction_hint: float | None = None,
    ) -> TrainForward:
        """Training-mode forward on raw inputs `x` (scaled internally).

        Every architecture runs sparse: a no-grad dense pass selects the entries
        that can be non-zero (or, for JumpReLU, can have a gradient), then only
        those entries are recomputed with autograd and decoded. This is exact:
        the entries left out have zero activation and zero gradient.

        A dense-start architecture whose previous step had more than DENSE_FRACTION of
        its entries active (`active_fraction_hint`, the trainer's record) goes straight
        to the plain dense forward: a selection pass would cost one more dense GEMM and
        a code of millions of entries, only to be thrown away. Both paths are exact.
        """
        x_scaled = x * self.input_scale
        x_centered = x_scaled - self.b_dec
        if (
            self.starts_dense
            and active_fraction_hint is not None
            and active_fraction_hint > DENSE_FRACTION
        ):
            return self._dense_forward_train(x_scaled, x_centered)
        code = self.select_for_training(x_centered.detach(), batch_topk_hint)
        if self.starts_dense and code.values.numel() > DENSE_FRACTION * (
            code.batch_size * code.num_latents
        ):
            return self._dense_forward_train(x_scaled, x_centered)
        pre_values = gathered_preactivations(x_centered, self.W_enc, self.b_enc, code)
        values = self.activation(pre_values, code.latents)
        code = SparseCode(code.rows, code.latents, values, code.batch_size, code.num_latents)
        x_hat, prefixes = self.decode_for_training(code)
        return TrainForward(
            x_scaled, x_hat, values, code.latents, pre_values, code.l0_per_sample(), code.fired(),
            code=code, prefix_reconstructions=prefixes,
        )  # fmt: skip

    def _dense_forward_train(
        self, x_scaled: torch.Tensor, x_centered: torch.Tensor
    ) -> TrainForward:
        """Plain dense forward, for the dense early phase of dense-start architectures."""
        # float32 pre-activations even under a bf16 autocast: the activation, the sparsity
        # loss and JumpReLU's threshold kernel see float32, as in the sparse path.
        pre = F.linear(x_centered, self.W_enc, self.b_enc).float()
        values = self.activation(pre, None)
        x_hat = values @ self.W_dec + self.b_dec
        active = values.detach() > 0
        return TrainForward(
            x_scaled, x_hat, values, None, pre, active.sum(1).float(), active.any(0)
        )

    # ------------------------------------------------------------- inference
    @torch.no_grad()
    def encode_sparse(self, x: torch.Tensor) -> SparseCode:
        """Inference-mode code of raw inputs `x` (BatchTopK uses its threshold)."""
        return self.select(x * self.input_scale - self.b_dec)

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
