"""float32 vs bfloat16 autocast for SAE training steps on this CPU (run on demand, not in CI).

The question before any precision setting: how much faster is a training step under
`torch.autocast("cpu", dtype=torch.bfloat16)` (float32 master weights, bf16 GEMMs) than
in float32, per architecture, at the real shape, and how far do the losses move? Native
bf16 matmul exists on CPUs with AMX (`amx_bf16`) or AVX512-BF16 (`avx512_bf16`); elsewhere
bf16 is emulated and slower.

For each architecture, from the same initialised SAE and the same in-memory Gaussian
batches (d 576, d_sae 2304 by default, k 40, batch 4,096), the trainer's own step
(`forward_train`, `compute_loss`, backward, Adam) is timed in each precision, steady
state (`--steps` after `--warmup`), side by side in one process. In the same run the
dense bound (encoder GEMM forward + weight gradient) is timed in each precision. The
loss of the first step is compared between the two precisions (relative difference).
Autocast may fail for an operation with no bf16 kernel; the error is recorded.

Writes bench/out/precision.csv and prints it.

    python bench/precision.py [--d-sae 2304] [--batch 4096] [--steps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import pandas as pd
import torch

from saesanity.core.architectures import ARCHITECTURES
from saesanity.core.precision import cpu_flags
from saesanity.core.sae import unit_sphere_directions
from saesanity.core.training import TrainConfig, build_sae, compute_loss

OUT = Path(__file__).resolve().parent / "out" / "precision.csv"


def precision_context(precision: str):
    if precision == "bfloat16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fresh_sae(architecture: str, d_in: int, d_sae: int, k: int, seed: int = 0):
    config = TrainConfig(
        architecture=architecture, d_sae=d_sae, k=k, batch_size=4096, max_samples=4096 * 1000
    )
    sae = build_sae(config, d_in)
    generator = torch.Generator().manual_seed(seed)
    sae.initialise(unit_sphere_directions(d_sae, d_in, generator), torch.zeros(d_in), 0.1)
    return config, sae


def time_steps(architecture, precision, batches, d_sae, k, warmup, steps) -> dict:
    config, sae = fresh_sae(architecture, batches[0].shape[1], d_sae, k)
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-4, fused=True)  # as the trainer
    dead = torch.zeros(d_sae, dtype=torch.bool)
    first_loss, times, active_fraction = None, [], None
    for step in range(warmup + steps):
        x = batches[step % len(batches)]
        started = time.perf_counter()
        with precision_context(precision):
            # As the trainer does: the last step's active fraction picks the dense path.
            out = sae.forward_train(x, active_fraction_hint=active_fraction)
            loss, _ = compute_loss(sae, config, out, step, dead)
        active_fraction = float(out.l0_per_sample.mean()) / d_sae
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sae.normalise_decoder()
        if step >= warmup:
            times.append(time.perf_counter() - started)
        if first_loss is None:
            first_loss = float(loss.detach())
    per_step = sorted(times)[len(times) // 2]
    return {"samples_per_s": batches[0].shape[0] / per_step, "first_loss": first_loss}


def time_bound(precision, batch, d_sae, warmup, steps) -> float:
    W = torch.randn(d_sae, batch.shape[1], requires_grad=True)
    times = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        with precision_context(precision):
            pre = batch @ W.T
        pre.float().sum().backward()
        W.grad = None
        if step >= warmup:
            times.append(time.perf_counter() - started)
    return batch.shape[0] / sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d-in", type=int, default=576)
    parser.add_argument("--d-sae", type=int, default=2304)
    parser.add_argument("--k", type=int, default=40)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--architectures", nargs="*", default=list(ARCHITECTURES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    flags = cpu_flags()
    native = sorted({"amx_bf16", "avx512_bf16"} & flags) or ["none"]
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(args.batch, args.d_in, generator=generator) for _ in range(4)]
    rows = []
    bound = {p: time_bound(p, batches[0], args.d_sae, args.warmup, args.steps) for p in
             ("float32", "bfloat16")}  # fmt: skip
    for architecture in args.architectures:
        row = {"architecture": architecture, "d_sae": args.d_sae, "batch": args.batch,
               "threads": args.threads, "native_bf16": ",".join(native)}  # fmt: skip
        results = {}
        for precision in ("float32", "bfloat16"):
            try:
                results[precision] = time_steps(
                    architecture, precision, batches, args.d_sae, args.k, args.warmup, args.steps
                )
                row[f"{precision}_samples_per_s"] = round(results[precision]["samples_per_s"])
                row[f"{precision}_of_bound"] = round(
                    results[precision]["samples_per_s"] / bound[precision], 3
                )
            except Exception as error:  # an op without a bf16 kernel: record it
                row[f"{precision}_error"] = f"{type(error).__name__}: {error}"[:200]
        if len(results) == 2:
            row["speedup_bf16"] = round(
                results["bfloat16"]["samples_per_s"] / results["float32"]["samples_per_s"], 2
            )
            f32, b16 = results["float32"]["first_loss"], results["bfloat16"]["first_loss"]
            row["first_loss_rel_diff"] = abs(b16 - f32) / abs(f32)
        rows.append(row)
    table = pd.DataFrame(rows)
    table["bound_float32_samples_per_s"] = round(bound["float32"])
    table["bound_bfloat16_samples_per_s"] = round(bound["bfloat16"])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT, index=False)
    print(table.to_string(index=False))
    print(f"written {OUT}")


if __name__ == "__main__":
    main()
