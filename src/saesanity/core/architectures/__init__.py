"""One module per SAE architecture, and the registry that names them.

Each architecture subclasses `saesanity.core.sae.SparseAutoencoder` and says which latents
are active (in training and at inference), its activation, its sparsity loss, what it
updates after each optimiser step and how SAELens saves it."""

from __future__ import annotations

import inspect

from saesanity.core.architectures.batchtopk import BatchTopKSAE
from saesanity.core.architectures.jumprelu import JumpReLUSAE
from saesanity.core.architectures.matryoshka import MatryoshkaSAE
from saesanity.core.architectures.relu import ReLUSAE
from saesanity.core.architectures.topk import TopKSAE
from saesanity.core.sae import SparseAutoencoder

REGISTRY: dict[str, type[SparseAutoencoder]] = {
    cls.architecture: cls for cls in (ReLUSAE, TopKSAE, BatchTopKSAE, JumpReLUSAE, MatryoshkaSAE)
}
ARCHITECTURES = tuple(REGISTRY)


def make_sae(
    architecture: str, d_in: int, d_sae: int, k: int | None = None, **options
) -> SparseAutoencoder:
    """An SAE of the named architecture. `options` are any architecture's settings
    (group_fractions, jumprelu_bandwidth, jumprelu_threshold_init), as a training config
    carries them all; each architecture takes its own."""
    if architecture not in REGISTRY:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
    unknown = set(options) - OPTIONS
    if unknown:
        raise TypeError(f"make_sae: unknown options {sorted(unknown)}; known: {sorted(OPTIONS)}")
    cls = REGISTRY[architecture]
    accepted = _options(cls)
    return cls(d_in, d_sae, k=k, **{name: v for name, v in options.items() if name in accepted})


def _options(cls: type[SparseAutoencoder]) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self", "d_in", "d_sae", "k"}


OPTIONS = set().union(*(_options(cls) for cls in REGISTRY.values()))
