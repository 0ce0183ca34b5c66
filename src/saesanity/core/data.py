"""What the trainer needs from a source of activations."""

from __future__ import annotations

import hashlib
from typing import Protocol

import torch


def derive_seed(seed: int, purpose: str) -> int:
    """An independent 63-bit seed for each purpose (ground truth, SAE init, data
    stream...), so equal user-facing seeds never give equal random draws for
    different things (e.g. an SAE initialised exactly at the ground truth)."""
    digest = hashlib.sha256(f"{purpose}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class ActivationSource(Protocol):
    """A deterministic, streamable source of training activations.

    `batch(step, batch_size)` must return the same tensor for the same
    arguments (that is what makes runs resumable and variants comparable: every
    variant with the same seed sees the same batches in the same order), and
    must not need the whole dataset in memory. `identity` names the data (a hash of
    what the batches are made of): a training state is resumed only on the same one.
    """

    d_in: int
    identity: str

    def batch(self, step: int, batch_size: int) -> torch.Tensor: ...


def estimate_covariance(
    source: ActivationSource, num_batches: int, batch_size: int, first_step: int = 0
) -> torch.Tensor:
    """Covariance of the source's activations from `num_batches` batches (float64)."""
    total = torch.zeros(source.d_in, dtype=torch.float64)
    outer = torch.zeros(source.d_in, source.d_in, dtype=torch.float64)
    count = 0
    for step in range(first_step, first_step + num_batches):
        x = source.batch(step, batch_size).double()
        total += x.sum(0)
        outer += x.T @ x
        count += x.shape[0]
    mean = total / count
    return outer / count - torch.outer(mean, mean)
