"""Where the dense path of a dense-start SAE (ReLU, JumpReLU) stops paying (run on
demand, not in CI).

ReLU and JumpReLU start with about half their latents active. Above
`saesanity.core.sae.DENSE_FRACTION` active entries the trainer runs a plain dense
forward/backward; below it, the sparse kernels. This times one training step (forward,
ReLU's loss, backward) on each path at fixed active fractions, so the fraction where
the two cost the same can be read off per shape. The active fraction is set by b_enc:
minus the (1 - fraction) quantile of the pre-activations. Median of --repeats steps
each, both paths interleaved per fraction, Gaussian inputs (the cost does not depend on
the data, only on how many entries are active).

Writes bench/out/dense_switch.csv and prints a table (sparse / dense < 1: the sparse
path is cheaper there).

    python bench/dense_switch.py [--threads N] [--repeats 6] [--batch 1024]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from saesanity.core import sae as sae_module
from saesanity.core.architectures.relu import ReLUSAE

SHAPES = [(576, 2304), (100, 3200), (576, 18432)]  # (d_in, d_sae): real x4, synthetic, real x32
FRACTIONS = [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5]


def step_seconds(sae: ReLUSAE, x: torch.Tensor, dense: bool, repeats: int) -> tuple[float, float]:
    """Median seconds of one step on the chosen path, and its active fraction."""
    hint = 1.0 if dense else 0.0  # a previous step's active fraction: selects the path
    switch = sae_module.DENSE_FRACTION
    # The sparse path falls back to dense above DENSE_FRACTION; lift it for the timing.
    sae_module.DENSE_FRACTION = switch if dense else 2.0
    try:
        times = []
        for _ in range(repeats + 1):  # the first is a warm-up
            start = time.perf_counter()
            out = sae.forward_train(x, active_fraction_hint=hint)
            penalty = (out.values * out.per_latent(sae.W_dec.norm(dim=1))).sum()
            loss = (out.x_hat - out.x_scaled).pow(2).sum(1).mean() + penalty / x.shape[0]
            sae.zero_grad(set_to_none=True)
            loss.backward()
            times.append(time.perf_counter() - start)
    finally:
        sae_module.DENSE_FRACTION = switch
    active = float(out.l0_per_sample.mean()) / sae.d_sae
    return sorted(times[1:])[repeats // 2], active


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--out", default="bench/out/dense_switch.csv")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for d_in, d_sae in SHAPES:
        generator = torch.Generator().manual_seed(0)
        sae = ReLUSAE(d_in, d_sae)
        sae.initialise(torch.randn(d_sae, d_in, generator=generator), torch.zeros(d_in))
        x = torch.randn(args.batch, d_in, generator=generator)
        with torch.no_grad():
            pre = (x[:256] @ sae.W_enc.T).flatten()
        for fraction in FRACTIONS:
            with torch.no_grad():
                sae.b_enc.fill_(-float(torch.quantile(pre, 1 - fraction)))
            dense, _ = step_seconds(sae, x, True, args.repeats)
            sparse, active = step_seconds(sae, x, False, args.repeats)
            rows.append({
                "d_in": d_in, "d_sae": d_sae, "batch": args.batch, "threads": args.threads,
                "active_fraction": active, "dense_step_ms": dense * 1e3,
                "sparse_step_ms": sparse * 1e3, "sparse_over_dense": sparse / dense,
            })  # fmt: skip
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"switch point in the trainer: {sae_module.DENSE_FRACTION}")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:,.3f}"))


if __name__ == "__main__":
    main()
