"""The compute device a job asked for, checked before any work starts."""

from __future__ import annotations

import socket

import torch


class DeviceUnavailableError(RuntimeError):
    """The configured device does not exist on this machine."""


def check_device(device: str) -> str:
    """`device` (config `device`: "cpu", "cuda", "cuda:N", "mps") if this machine has it,
    else a DeviceUnavailableError that says what to set. Checked in the job, not when the
    workflow is parsed: on a cluster the login node has no GPU, the compute node has."""
    kind = device.split(":", 1)[0]
    if kind == "cpu":
        return device
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index < count:
            return device
        found = f"{count} CUDA device(s)" if count else "no CUDA device"
        build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a CPU-only build")
        raise DeviceUnavailableError(
            f"device = {device!r}, but {socket.gethostname()} has {found} ({build}); "
            "set device: cpu (e.g. --config device=cpu) or run on a GPU node"
        )
    if kind == "mps":
        if torch.backends.mps.is_available():
            return device
        raise DeviceUnavailableError(
            f"device = {device!r}, but this machine has no MPS device; set device: cpu"
        )
    raise DeviceUnavailableError(f"device = {device!r}: expected cpu, cuda, cuda:N or mps")
