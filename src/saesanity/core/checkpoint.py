"""Atomic file writes and SAE checkpoints (safetensors weights + JSON config)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from saesanity.core.architectures import make_sae
from saesanity.core.sae import SparseAutoencoder


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` then rename over `path`, so readers never see half a file.
    The file gets the mode the umask asks for (a temporary file is made 0600, which on a
    shared file system would hide results from colleagues)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finite_or_null(value):
    """JSON has no NaN or infinity: such values are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value


def write_json(path: str | Path, data: dict) -> None:
    """Valid JSON (NaN and infinity become null), keys sorted, written atomically."""
    text = json.dumps(finite_or_null(data), indent=2, sort_keys=True, allow_nan=False)
    atomic_write(path, lambda tmp: tmp.write_text(text))


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


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names it and the way out."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(
            f"{path}: {problem}. Delete the run's folder (or this file) and rerun: the "
            "workflow trains it again"
        )


def load_sae(weights_path: str | Path, config_path: str | Path) -> SparseAutoencoder:
    """Inverse of `save_sae`; extra tensors in the file are ignored. A file that cannot be
    read (truncated, edited) is a CheckpointError naming it and how to rebuild it."""
    try:
        config = json.loads(Path(config_path).read_text())
        arch = config["architecture"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(config_path, f"unreadable SAE config ({error!r})") from error
    try:
        tensors = load_file(str(weights_path))
    except Exception as error:  # safetensors raises its own error types
        raise CheckpointError(weights_path, f"unreadable weights ({error})") from error
    arch = config["architecture"]
    d_sae = arch["d_sae"]
    fractions = None
    if arch.get("group_sizes"):
        fractions = [size / d_sae for size in arch["group_sizes"]]
    sae = make_sae(
        arch["architecture"],
        d_in=arch["d_in"],
        d_sae=d_sae,
        k=arch.get("k"),
        group_fractions=fractions,
        jumprelu_bandwidth=arch.get("jumprelu_bandwidth", 0.001),
    )
    if arch.get("group_sizes"):
        sae.group_sizes = list(arch["group_sizes"])
    expected = set(sae.state_dict())
    missing = expected - set(tensors)
    if missing:
        raise CheckpointError(weights_path, f"missing tensors {sorted(missing)}")
    try:
        sae.load_state_dict({name: tensors[name] for name in expected})
    except RuntimeError as error:
        raise CheckpointError(
            weights_path, f"tensor shapes do not match its config ({error})"
        ) from error
    for name, tensor in sae.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(weights_path, f"non-finite values in {name}")
    return sae
