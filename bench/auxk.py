"""AuxK's cost as latents die: the trainer's sparse AuxK beside a dense one (on demand).

Once most latents are dead (seen: 91% of a TopK SAE's latents at lr 1e-2 by 10M
samples, constant synthetic regime), a dense AuxK (dictionary_learning's form: the
pre-activations of every dead latent, with autograd) costs most of a training step.
The trainer's AuxK picks each sample's top-k_aux dead latents without autograd and
recomputes only those entries. This times one full training step (the trainer's
`forward_train` + `compute_loss` + backward) with each AuxK, from the same SAE and
Gaussian batches, at several dead fractions, side by side in one process, and checks
that both give the same AuxK value.

Writes bench/out/auxk.csv (median step time per variant, ratio dense / sparse).

    python bench/auxk.py [--d-in 100] [--d-sae 3200] [--k 20] [--batch 1024] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

import saesanity.core.architectures.topk as topk_module
from saesanity.core.sae import unit_sphere_directions
from saesanity.core.training import TrainConfig, build_sae, compute_loss

OUT = Path(__file__).resolve().parent / "out" / "auxk.csv"


def dense_auxk(sae, out, dead, k_aux):
    """AuxK with autograd through every dead latent's pre-activation."""
    dead_latents = dead.nonzero().squeeze(1)
    k_aux = min(k_aux, len(dead_latents))
    if k_aux == 0:
        return out.x_hat.new_zeros(())
    x_centered = out.x_scaled - sae.b_dec
    pre = torch.nn.functional.linear(
        x_centered, sae.W_enc[dead_latents], sae.b_enc[dead_latents]
    ).relu()
    values, chosen = pre.topk(k_aux, dim=1)
    residual = (out.x_scaled - out.x_hat).detach()
    residual_hat = torch.nn.functional.embedding_bag(
        chosen, sae.W_dec[dead_latents], mode="sum", per_sample_weights=values
    )
    error = (residual - residual_hat).pow(2).sum(1).mean()
    variance = (residual - residual.mean(0)).pow(2).sum(1).mean().clamp_min(1e-12)
    return error / variance


def step_times(args, dead_fraction: float, auxk) -> tuple[float, float]:
    config = TrainConfig(architecture="topk", d_sae=args.d_sae, k=args.k,
                         batch_size=args.batch, max_samples=args.batch * 1000)  # fmt: skip
    sae = build_sae(config, args.d_in)
    generator = torch.Generator().manual_seed(0)
    sae.initialise(unit_sphere_directions(args.d_sae, args.d_in, generator), torch.zeros(args.d_in))
    dead = torch.zeros(args.d_sae, dtype=torch.bool)
    dead[torch.randperm(args.d_sae, generator=generator)[: int(dead_fraction * args.d_sae)]] = True
    # Dead latents rarely reach a positive pre-activation (that is why they are dead):
    # shift their biases so that about `--positive` of their entries are positive.
    with torch.no_grad():
        sample = torch.randn(4096, args.d_in, generator=generator) * sae.input_scale - sae.b_dec
        pre = sample @ sae.W_enc.T
        shift = pre.quantile(1 - args.positive, dim=0) if dead.any() else None
        if shift is not None:
            sae.b_enc[dead] = -shift[dead]
    batches = [torch.randn(args.batch, args.d_in, generator=generator) for _ in range(4)]
    original, topk_module.auxk_loss = topk_module.auxk_loss, auxk
    try:
        times, aux = [], None
        for step in range(args.warmup + args.steps):
            start = time.perf_counter()
            out = sae.forward_train(batches[step % len(batches)])
            loss, parts = compute_loss(sae, config, out, step, dead)
            sae.zero_grad(set_to_none=True)
            loss.backward()
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
            aux = parts.get("auxk")
    finally:
        topk_module.auxk_loss = original
    return float(torch.tensor(times).median()), aux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-in", type=int, default=100)
    parser.add_argument("--d-sae", type=int, default=3200)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--dead", type=float, nargs="+", default=[0.0, 0.01, 0.3, 0.9])
    parser.add_argument(
        "--positive",
        type=float,
        default=0.001,
        help="fraction of a dead latent's pre-activations above zero",
    )
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for dead_fraction in args.dead:
        sparse, sparse_aux = step_times(args, dead_fraction, topk_module.auxk_loss)
        dense, dense_aux = step_times(args, dead_fraction, dense_auxk)
        rows.append({
            "d_in": args.d_in, "d_sae": args.d_sae, "k": args.k, "batch": args.batch,
            "threads": args.threads, "dead_fraction": dead_fraction,
            "dead_positive_fraction": args.positive,
            "step_ms_sparse_auxk": 1e3 * sparse, "step_ms_dense_auxk": 1e3 * dense,
            "dense_over_sparse": dense / sparse, "auxk_sparse": sparse_aux,
            "auxk_dense": dense_aux,
        })  # fmt: skip
    frame = pd.DataFrame(rows)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(OUT, index=False)
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
