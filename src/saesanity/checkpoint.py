"""Atomic file writes and SAE checkpoints (safetensors weights + JSON config)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from saesanity.sae import SparseAutoencoder


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` then rename over `path`, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True)))


def save_sae(
    sae: SparseAutoencoder,
    weights_path: str | Path,
    config_path: str | Path,
    metadata: dict,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> None:
    """Weights (all parameters and buffers, plus `extra_tensors`) and a JSON config."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in sae.state_dict().items()}
    for name, tensor in (extra_tensors or {}).items():
        tensors[name] = tensor.detach().cpu().contiguous()
    atomic_write(weights_path, lambda tmp: save_file(tensors, str(tmp)))
    write_json(config_path, {"architecture": sae.architecture_config(), **metadata})


def load_sae(weights_path: str | Path, config_path: str | Path) -> SparseAutoencoder:
    """Inverse of `save_sae`; extra tensors in the file are ignored."""
    config = json.loads(Path(config_path).read_text())
    arch = config["architecture"]
    d_sae = arch["d_sae"]
    fractions = None
    if arch.get("group_sizes"):
        fractions = [size / d_sae for size in arch["group_sizes"]]
    sae = SparseAutoencoder(
        d_in=arch["d_in"],
        d_sae=d_sae,
        architecture=arch["architecture"],
        k=arch.get("k"),
        group_fractions=fractions,
        jumprelu_bandwidth=arch.get("jumprelu_bandwidth", 0.001),
    )
    if arch.get("group_sizes"):
        sae.group_sizes = list(arch["group_sizes"])
    tensors = load_file(str(weights_path))
    expected = set(sae.state_dict())
    missing = expected - set(tensors)
    if missing:
        raise ValueError(f"{weights_path}: missing tensors {sorted(missing)}")
    sae.load_state_dict({name: tensors[name] for name in expected})
    return sae
