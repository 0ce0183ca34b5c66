"""Trainer throughput vs the unavoidable dense work (run on demand, not in CI).

For each architecture at the synthetic study's shape (d = 100, m = 3,200,
k = 20, batch 4,096) this times the real `train()` loop, data generation
included, and in the same run the dense lower bound every SAE step pays: the
encoder matmul forward plus its weight gradient (plain autograd). It prints and
writes samples/s and the ratio trainer / bound to bench/out/throughput.csv.

Steady-state time per step is the difference between a long and a short run
divided by the extra steps, so one-off initialisation is excluded. ReLU and
JumpReLU start dense (half the latents active) and only become sparse as the
sparsity penalty bites; they are timed both from the standard init ("start",
dense) and with thresholds / L1 set so that L0 is near k from the first step
("sparse"), which is the regime of most of a run.

    python bench/throughput.py [--threads N] [--short 10] [--long 40]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from saesanity.core.training import TrainConfig, train
from saesanity.sources.synthetic import SyntheticSource, make_ground_truth

D_IN, D_SAE, K, BATCH = 100, 3200, 20, 4096


def time_train(truth, steps: int, **overrides) -> float:
    config = TrainConfig(
        d_sae=D_SAE, k=K, batch_size=BATCH, max_samples=BATCH * steps, min_samples=0,
        normalisation_batches=1, log_every_steps=10**9, checkpoint_every_steps=10**9,
        **overrides,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as out_dir:
        start = time.perf_counter()
        train(config, SyntheticSource(truth, 0), out_dir, progress=False)
        return time.perf_counter() - start


def seconds_per_step(truth, short: int, long: int, **overrides) -> float:
    return (time_train(truth, long, **overrides) - time_train(truth, short, **overrides)) / (
        long - short
    )


def dense_bound_seconds(repeats: int = 20) -> float:
    """Encoder forward GEMM + its weight gradient, the work no SAE step avoids."""
    x = torch.randn(BATCH, D_IN)
    W_enc = torch.randn(D_SAE, D_IN, requires_grad=True)
    grad = torch.randn(BATCH, D_SAE)
    for _ in range(3):
        (x @ W_enc.T).backward(grad)
    start = time.perf_counter()
    for _ in range(repeats):
        W_enc.grad = None
        (x @ W_enc.T).backward(grad)
    return (time.perf_counter() - start) / repeats


def data_seconds(truth, repeats: int = 20) -> float:
    source = SyntheticSource(truth, 0)
    start = time.perf_counter()
    for step in range(repeats):
        source.batch(step, BATCH)
    return (time.perf_counter() - start) / repeats


CASES = [
    ("topk", {}),
    ("batchtopk", {}),
    ("matryoshka", {}),
    # Sparse regime: threshold / L1 set so L0 is near k from the start.
    ("jumprelu", {"jumprelu_threshold_init": 0.045, "encoder_init_norm": 0.1}, "sparse"),
    ("jumprelu", {"encoder_init_norm": 0.1}, "start"),
    ("relu", {"encoder_init_norm": 0.1, "l1_coefficient": 0.2}, "start"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--short", type=int, default=10)
    parser.add_argument("--long", type=int, default=40)
    parser.add_argument("--out", default="bench/out/throughput.csv")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    truth = make_ground_truth(D_IN, D_SAE, {"law": "constant", "p": 0.00625},
                              {"mu": 0.0, "sigma": 0.25}, 0)  # fmt: skip
    rows = []
    for case in CASES:
        architecture, overrides = case[0], case[1]
        phase = case[2] if len(case) > 2 else "steady"
        bound = dense_bound_seconds()
        step = seconds_per_step(truth, args.short, args.long, architecture=architecture,
                                **overrides)  # fmt: skip
        rows.append({
            "architecture": architecture, "phase": phase, "threads": args.threads,
            "step_seconds": step, "samples_per_second": BATCH / step,
            "bound_step_seconds": bound, "bound_samples_per_second": BATCH / bound,
            "ratio_to_bound": bound / step,
        })  # fmt: skip
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()},
              flush=True)  # fmt: skip
    data = data_seconds(truth)
    print(f"synthetic data generation: {data * 1000:.1f} ms per batch "
          f"({BATCH / data:,.0f} samples/s), included in the trainer numbers")  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["data_seconds_per_batch"] = data
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(frame.to_string(index=False))


if __name__ == "__main__":
    main()
