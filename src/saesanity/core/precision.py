"""Which floating-point precision a job computes in, chosen by what the hardware has.

`float32` computes everything in float32. `bfloat16` runs the dense matrix products
under `torch.autocast` in bfloat16 while parameters, optimiser state, losses and the
sparse kernels stay float32 (mixed precision with float32 master weights). `auto` picks
bfloat16 only where the hardware multiplies bfloat16 natively: a CPU with AMX
(`amx_bf16`) or AVX512-BF16 (`avx512_bf16`), or a CUDA GPU that reports bf16 support.
Elsewhere bfloat16 is emulated and slower than float32, so `auto` stays float32.

A run records the precision it resolved to (sae.json), and a saved training state is
resumed only in the precision it was written in.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

PRECISIONS = ("float32", "bfloat16", "auto")
# CPU flags (as /proc/cpuinfo spells them) of native bf16 matrix multiplication.
NATIVE_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_flags(cpuinfo_path: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags the kernel reports (empty where there is no /proc/cpuinfo)."""
    try:
        text = Path(cpuinfo_path).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16(device: str, flags: set[str] | None = None) -> bool:
    """Whether `device` multiplies bfloat16 natively (`flags`: the CPU's, for tests)."""
    kind = device.split(":", 1)[0]
    if kind == "cpu":
        flags = cpu_flags() if flags is None else flags
        return bool(NATIVE_BF16_CPU_FLAGS & flags)
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return False  # MPS: autocast to bf16 is not where its speed is


def resolve_precision(precision: str, device: str, flags: set[str] | None = None) -> str:
    """`float32` or `bfloat16`: what `precision` (one of PRECISIONS) means on `device`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision = {precision!r}: expected one of {PRECISIONS}")
    if precision == "auto":
        return "bfloat16" if native_bf16(device, flags) else "float32"
    return precision


def autocast(precision: str, device: str) -> contextlib.AbstractContextManager:
    """The context a forward pass runs in: bf16 autocast for `bfloat16`, else nothing.
    `precision` must already be resolved (not `auto`)."""
    if precision == "bfloat16":
        return torch.autocast(device.split(":", 1)[0], dtype=torch.bfloat16)
    if precision != "float32":
        raise ValueError(f"precision = {precision!r}: resolve it first (float32 or bfloat16)")
    return contextlib.nullcontext()


def matmul_dtype(reference: torch.Tensor) -> torch.dtype:
    """The dtype autocast gives a matrix product of float32 `reference`-device tensors
    here (bf16 inside a bf16 autocast region, else the tensor's own dtype)."""
    kind = reference.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return reference.dtype
