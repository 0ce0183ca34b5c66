"""Synthetic activations with known ground-truth features (the study's case study 1).

x = sum_i b_i * c_i * f_i, with f_i unit vectors uniform on the sphere,
b_i ~ Bernoulli(p_i) and c_i ~ LogNormal(mu, sigma), independent across features.

Batches are generated on demand from a generator seeded by (seed, stream, step),
so the training set is never held in memory and any batch can be regenerated
(resuming after a kill, or giving every variant the same data order).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from saesanity.core.checkpoint import atomic_write, write_json
from saesanity.core.data import derive_seed
from saesanity.core.sae import unit_sphere_directions

STREAMS = ("train", "eval")


@dataclass
class GroundTruth:
    features: torch.Tensor  # (num_features, n), unit rows
    probabilities: torch.Tensor  # (num_features,)
    magnitude_mu: float
    magnitude_sigma: float

    @property
    def n(self) -> int:
        return self.features.shape[1]

    @property
    def num_features(self) -> int:
        return self.features.shape[0]

    def expected_active(self) -> float:
        return float(self.probabilities.double().sum())


def feature_probabilities(
    regime: dict, num_features: int, generator: torch.Generator
) -> torch.Tensor:
    """Per-feature firing probabilities for a regime spec from the config."""
    law = regime["law"]
    if law == "constant":
        return torch.full((num_features,), float(regime["p"]))
    if law == "loguniform":
        low, high = float(regime["log10_min"]), float(regime["log10_max"])
        exponents = low + (high - low) * torch.rand(
            num_features, generator=generator, dtype=torch.float64
        )
        return (10.0**exponents).float()
    raise ValueError(f"unknown probability law {law!r}; expected 'constant' or 'loguniform'")


def make_ground_truth(
    n: int, num_features: int, regime: dict, magnitude: dict, seed: int
) -> GroundTruth:
    generator = torch.Generator().manual_seed(derive_seed(seed, "ground_truth"))
    features = unit_sphere_directions(num_features, n, generator)
    probabilities = feature_probabilities(regime, num_features, generator)
    return GroundTruth(features, probabilities, float(magnitude["mu"]), float(magnitude["sigma"]))


def save_ground_truth(truth: GroundTruth, path: str | Path, metadata: dict) -> None:
    """Dictionary and probabilities as safetensors, with a JSON sidecar `<path>.json`."""
    tensors = {"features": truth.features.contiguous(), "probabilities": truth.probabilities}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))
    write_json(
        str(path) + ".json",
        {
            "magnitude_mu": truth.magnitude_mu,
            "magnitude_sigma": truth.magnitude_sigma,
            "n": truth.n,
            "num_features": truth.num_features,
            "expected_active_features": truth.expected_active(),
            **metadata,
        },
    )


def load_ground_truth(path: str | Path) -> GroundTruth:
    tensors = load_file(str(path))
    meta = json.loads(Path(str(path) + ".json").read_text())
    return GroundTruth(
        tensors["features"], tensors["probabilities"], meta["magnitude_mu"], meta["magnitude_sigma"]
    )


def _batch_seed(seed: int, stream: str, step: int) -> int:
    return derive_seed(seed, f"synthetic:{stream}:{step}")


def sample_active(
    probabilities: torch.Tensor, batch_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact Bernoulli(p_i) on/off draws for a batch, as (sample, feature) index pairs.

    Drawing a dense batch x features uniform matrix costs more than an SAE
    step. Instead, the successes of each feature's Bernoulli sequence are
    placed by geometric gaps: only ~ batch * p_i draws per feature. Features
    are grouped by how many gaps they need so the padding stays small.
    """
    expected = batch_size * probabilities.double()
    # Enough gaps to pass the end of the batch with overwhelming probability; checked below.
    needed = torch.ceil(expected + 6 * expected.sqrt() + 10)
    bucket = torch.ceil(torch.log2(needed)).long()
    samples, features = [], []
    for exponent in torch.unique(bucket).tolist():
        members = (bucket == exponent).nonzero().squeeze(1)
        p = probabilities[members].float().clamp(1e-12, 1 - 1e-6)
        log_q = torch.log1p(-p).unsqueeze(1)
        width = 2**exponent
        uniforms = torch.rand(len(members), width, generator=generator)
        gaps = torch.floor(torch.log(uniforms.clamp_min(1e-38)) / log_q) + 1
        positions = gaps.cumsum(1) - 1
        while (positions[:, -1] < batch_size).any():  # rare: extend every row
            uniforms = torch.rand(len(members), width, generator=generator)
            more = torch.floor(torch.log(uniforms.clamp_min(1e-38)) / log_q) + 1
            positions = torch.cat([positions, positions[:, -1:] + more.cumsum(1)], 1)
        member_row, column = (positions < batch_size).nonzero(as_tuple=True)
        samples.append(positions[member_row, column].long())
        features.append(members[member_row])
    return torch.cat(samples), torch.cat(features)


class SyntheticSource:
    """Streams batches of synthetic activations for one (ground truth, seed, stream)."""

    def __init__(self, truth: GroundTruth, seed: int, stream: str = "train") -> None:
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}; expected one of {sorted(STREAMS)}")
        self.truth, self.seed, self.stream = truth, seed, stream
        self.d_in = truth.n
        # What the stream is made of, so training resumes only on the same data.
        digest = hashlib.sha256()
        for tensor in (truth.features, truth.probabilities):
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        digest.update(f"{truth.magnitude_mu}:{truth.magnitude_sigma}:{seed}:{stream}".encode())
        self.identity = digest.hexdigest()

    def sample(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, sample_index, feature_index) of the batch; the index pairs list active features."""
        generator = torch.Generator().manual_seed(_batch_seed(self.seed, self.stream, step))
        sample_index, feature_index = sample_active(self.truth.probabilities, batch_size, generator)
        order = torch.argsort(sample_index, stable=True)
        sample_index, feature_index = sample_index[order], feature_index[order]
        magnitudes = torch.exp(
            self.truth.magnitude_mu
            + self.truth.magnitude_sigma * torch.randn(len(order), generator=generator)
        )
        counts = torch.bincount(sample_index, minlength=batch_size)
        offsets = torch.cumsum(counts, 0) - counts
        x = F.embedding_bag(
            feature_index, self.truth.features, offsets, mode="sum", per_sample_weights=magnitudes
        )
        return x, sample_index, feature_index

    def batch(self, step: int, batch_size: int) -> torch.Tensor:
        return self.sample(step, batch_size)[0]


def expected_active_features(regime: dict, num_features: int) -> float:
    """Closed-form mean number of active features per sample for a regime spec."""
    if regime["law"] == "constant":
        return num_features * float(regime["p"])
    low, high = 10.0 ** float(regime["log10_min"]), 10.0 ** float(regime["log10_max"])
    return num_features * (high - low) / math.log(high / low)
