"""Trainer throughput at the real-data shape, fed from an activation store
(run on demand, not in CI).

Shape: d = the store's d_model (576), d_sae = --expansion x d (default 4 -> 2,304, the
real grid's width; the study's expansion 32 gives 18,432), k = 40, batch 4,096. For each
architecture this times the real `train()` loop reading `ActivationStore.batch` (so store
reading is included), and in the same run, just before it, the dense lower bound every
SAE step pays: the encoder matmul forward plus its weight gradient. Ratio = bound time /
trainer time (1 = the trainer costs no more than that one GEMM pair).

Steady-state time per step = (long run - short run) / extra steps; one 1-step
run first pays the lazy imports of the first optimiser (torch._dynamo, ~20 s)
so neither timed run does. ReLU and JumpReLU start dense (half the latents
active, the trainer's dense path); they are timed from the standard init
("start") and in the "sparse" regime of most of a run, L0 near k from the first
step: JumpReLU with its threshold initialised at the pre-activation quantile
1 - k/d_sae of the initialised SAE on the first batch, ReLU with b_enc set to
minus that value right after `initialise_sae` (a benchmark-only patch; it is
what the L1 penalty ends up doing). The L0 at the short run's last step is reported.

The default store (results/real/activations/eval, 32,893 tokens, one shard)
holds 8 batches, so the timed steps (< 8) never cross an epoch and the trainer
numbers contain the store's per-batch slice but not its group reload (read +
shuffle of the shard group, once an epoch here; once per 64 batches for a
4-shard group of 65k-token shards). The store alone is timed separately over
two epochs: median batch (slice only) and mean batch (reloads amortised).

Peak memory: each architecture in --memory-archs is trained for --short steps in
a fresh subprocess. After its imports it records its resident set size (VmRSS)
and resets the kernel's high-water mark (VmHWM, via /proc/self/clear_refs), then
opens the store (sha256 + read of every shard) and trains; "rss_peak_mb" is the
VmHWM at the end: the most physical memory the process held at any moment
(every allocator, shared-library pages included; page cache not), and
"train_peak_mb" = rss_peak_mb - the after-imports RSS: what opening the store
and training added at their peak.

Whole runs ("run" rows, --run-archs): each architecture trained as the workflow trains it
(config.yaml's real.training with the architecture's overrides, the table's L0, variant
trained, init iso, so ReLU and JumpReLU start dense; d_sae from --expansion like the other
rows), for --run-steps optimiser steps from
the standard initialisation, read from the training store (--run-store) with the
workflow's shuffle groups and outlier rule, logging and checkpoints included. Ratio =
steps x bound at the run's batch / the run's wall time: what a workflow run gets of the
bound, its dense start included (overweighted: a 400-step run
spends a larger share of its steps dense than the default's 3,200). Each whole run also
says where its time went: how many steps took the dense path (ReLU's and JumpReLU's
start), their share of the run's time, and each phase's ratio to the bound (dense: the
mean dense step; sparse: the median sparse step).

The bound is the faster of two layouts of the same GEMM pair, timed in the same run:
plain autograd (`x @ W.T` and its weight gradient) and `addmm` with W.T contiguous plus
`grad.T @ x` (up to 1.4x faster at batch 1,024 here), so the bound is never a slow
implementation of the work.

Writes bench/out/real_throughput.csv and prints a table.

    python bench/real_throughput.py [--store results/real/activations/eval] \
        [--expansion 4] [--short 3] [--long 8] [--threads N] [--memory-archs topk relu] \
        [--run-steps 400] [--run-archs topk batchtopk jumprelu relu matryoshka] [--only-runs]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from saesanity.core import training
from saesanity.core.sae import SparseAutoencoder
from saesanity.core.training import TrainConfig, build_sae, initialise_sae, train
from saesanity.sources.activation_store import ActivationStore
from saesanity.studies.runs import real_table_l0, real_train_config

K, BATCH = 40, 4096
# The real config's training settings that matter for the cost of a step.
# threshold_start_step 0: a timed run of a few steps must still estimate the BatchTopK
# threshold (TrainConfig refuses a run that ends before it starts).
COMMON = {"lr": 3.8e-4, "warmup_steps": 50, "threshold_start_step": 0}
ARCH_OVERRIDES = {
    "topk": {},
    "batchtopk": {},
    "matryoshka": {},
    "relu": {"encoder_init_norm": 0.1, "l1_coefficient": 0.3, "l1_warmup_steps": 50},
    "jumprelu": {"encoder_init_norm": 0.1, "adam_betas": (0.0, 0.999),
                 "sparsity_warmup_steps": 100},
}  # fmt: skip
CASES = [
    ("topk", "steady"),
    ("batchtopk", "steady"),
    ("matryoshka", "steady"),
    ("jumprelu", "sparse"),
    ("jumprelu", "start"),
    ("relu", "sparse"),
    ("relu", "start"),
]


def make_config(architecture: str, d_sae: int, steps: int, **extra) -> TrainConfig:
    return TrainConfig(
        architecture=architecture, d_sae=d_sae, k=K, batch_size=BATCH,
        max_samples=BATCH * steps, min_samples=0, normalisation_batches=1,
        log_every_steps=10**9, checkpoint_every_steps=10**9,
        **COMMON, **ARCH_OVERRIDES[architecture], **extra,
    )  # fmt: skip


@contextlib.contextmanager
def relu_bias(value: float | None):
    """Within the block, `train()` sets b_enc = value right after initialise_sae."""
    if value is None:
        yield
        return
    original = training.initialise_sae

    def patched(sae, config, source):
        original(sae, config, source)
        sae.b_enc.data.fill_(value)

    training.initialise_sae = patched
    try:
        yield
    finally:
        training.initialise_sae = original


def sparse_threshold(store_path: str, d_sae: int, architecture: str) -> float:
    """Pre-activation quantile 1 - k/d_sae of the freshly initialised SAE (first batch)."""
    config = make_config(architecture, d_sae, 1)
    source = ActivationStore(store_path, seed=config.seed, verify=False)
    sae = build_sae(config, source.d_in)
    initialise_sae(sae, config, source)
    with torch.no_grad():
        x = source.batch(0, BATCH) * sae.input_scale - sae.b_dec
        pre = torch.nn.functional.linear(x, sae.W_enc, sae.b_enc).flatten()
        keep = int(K / d_sae * pre.numel())
        return float(pre.kthvalue(pre.numel() - keep).values)


def case_overrides(architecture: str, phase: str, theta: float) -> tuple[dict, float | None]:
    """TrainConfig overrides and the patched ReLU b_enc (None: unpatched)."""
    if phase != "sparse":
        return {}, None
    if architecture == "jumprelu":
        return {"jumprelu_threshold_init": theta}, None
    return {}, -theta


@contextlib.contextmanager
def step_paths(record: list[tuple[float, bool]]):
    """Within the block, each training forward appends (its start time, dense path?)."""
    original = SparseAutoencoder.forward_train

    def recorded(self, *args, **kwargs):
        start = time.perf_counter()
        out = original(self, *args, **kwargs)
        record.append((start, out.latents is None))
        return out

    SparseAutoencoder.forward_train = recorded
    try:
        yield
    finally:
        SparseAutoencoder.forward_train = original


PHASE_COLUMNS = ["dense_steps", "dense_share_of_time", "dense_step_ratio", "sparse_step_ratio"]


def phase_columns(record: list[tuple[float, bool]], bound: float) -> dict:
    """Dense-path steps of a whole run, their share of its time and each phase's ratio
    to the bound (a step lasts from its forward to the next step's; the last is left
    out)."""
    times = torch.tensor([start for start, _ in record], dtype=torch.float64)
    steps = times.diff()
    dense = torch.tensor([is_dense for _, is_dense in record[:-1]])
    sparse = steps[~dense]
    return {
        "dense_steps": int(dense.sum()),
        "dense_share_of_time": float(steps[dense].sum() / steps.sum()),
        "dense_step_ratio": float(bound / steps[dense].mean()) if dense.any() else math.nan,
        "sparse_step_ratio": float(bound / sparse.median()) if len(sparse) else math.nan,
    }


def time_train(
    store_path: str,
    config: TrainConfig,
    bias: float | None,
    record: list[tuple[float, bool]] | None = None,
    **store_options,
) -> tuple[float, dict]:
    source = ActivationStore(store_path, seed=config.seed, verify=False, **store_options)
    paths = step_paths(record) if record is not None else contextlib.nullcontext()
    with tempfile.TemporaryDirectory() as out_dir, relu_bias(bias), paths:
        start = time.perf_counter()
        train(config, source, out_dir, progress=False)
        seconds = time.perf_counter() - start
        curve = pd.read_csv(Path(out_dir) / "curve.csv")
    return seconds, curve.iloc[-1].to_dict()  # logged once, at the last step


def dense_bound_seconds(d_in: int, d_sae: int, repeats: int, batch: int = BATCH) -> float:
    """Encoder forward GEMM + its weight gradient, the work no SAE step avoids: the
    faster of plain autograd and addmm on a contiguous W.T (median of `repeats` each)."""
    x = torch.randn(batch, d_in)
    W_enc = torch.randn(d_sae, d_in, requires_grad=True)
    W_columns, b_enc = W_enc.detach().t().contiguous(), torch.zeros(d_sae)
    grad = torch.randn(batch, d_sae)

    def autograd_pair() -> None:
        W_enc.grad = None
        (x @ W_enc.T).backward(grad)

    def addmm_pair() -> None:
        torch.addmm(b_enc, x, W_columns)
        grad.t() @ x

    best = math.inf
    for pair in (autograd_pair, addmm_pair):
        pair()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            pair()
            times.append(time.perf_counter() - start)
        best = min(best, sorted(times)[len(times) // 2])
    return best


def timing_row(
    architecture: str,
    phase: str,
    d_in: int,
    config: TrainConfig,
    threads: int,
    l0: float,
    step: float,
    bound: float,
    extra: dict | None = None,
) -> dict:
    """One printed and written row: a trainer step against the bound at its batch."""
    batch = config.batch_size
    row = {
        "architecture": architecture,
        "phase": phase,
        "d_in": d_in,
        "d_sae": config.d_sae,
        "k": config.k,
        "batch": batch,
        "threads": threads,
        "l0_last_step": l0,
        "step_seconds": step,
        "samples_per_second": batch / step,
        "bound_step_seconds": bound,
        "bound_samples_per_second": batch / bound,
        "ratio_to_bound": bound / step,
        **(extra or {}),
    }
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return row


def run_rows(args) -> list[dict]:
    """Whole runs from the standard initialisation, configured as the workflow's."""
    config = yaml.safe_load(Path(args.config).read_text())
    # The store read as the workflow's training reads it: its shuffle groups and its
    # outlier rule (without it, attention-sink tokens set the input scale).
    activations = config["real"]["activations"]
    store_options = {
        "shuffle_shards": activations["shuffle_shards"],
        "outlier_factor": activations["outlier_norm_factor"],
    }
    source = ActivationStore(args.run_store, seed=0, verify=False, **store_options)
    rows = []
    for architecture in args.run_archs:
        values = real_train_config(config, architecture, "trained", "iso",
                                   real_table_l0(config), 0)  # fmt: skip
        values.update(
            d_sae=args.expansion * source.d_in,
            max_samples=args.run_steps * values["batch_size"],
            snapshot_samples=[],
        )
        # A run shorter than the threshold's start must still estimate it (TrainConfig).
        values["threshold_start_step"] = min(values["threshold_start_step"], args.run_steps - 1)
        run_config = TrainConfig(**values)
        bound = dense_bound_seconds(
            source.d_in, run_config.d_sae, args.bound_repeats, run_config.batch_size
        )
        record: list[tuple[float, bool]] = []
        seconds, last = time_train(args.run_store, run_config, None, record, **store_options)
        rows.append(timing_row(architecture, f"run ({args.run_steps} steps)", source.d_in,
                               run_config, args.threads, last["l0"],
                               seconds / args.run_steps, bound,
                               phase_columns(record, bound)))  # fmt: skip
    return rows


def store_seconds(store_path: str, epochs: int = 2) -> dict:
    """Per-batch time of ActivationStore.batch alone, from a fresh store."""
    start = time.perf_counter()
    store = ActivationStore(store_path, seed=0)
    open_seconds = time.perf_counter() - start
    steps = max(1, epochs * store.n_tokens // BATCH)
    times = []
    for step in range(steps):
        start = time.perf_counter()
        store.batch(step, BATCH)
        times.append(time.perf_counter() - start)
    times_sorted = sorted(times)
    return {
        "store_open_seconds": open_seconds,  # manifest + sha256 + shape check of every shard
        "store_batch_median_seconds": times_sorted[len(times) // 2],
        "store_batch_mean_seconds": sum(times) / len(times),
        "store_batches_timed": steps,
    }


def memory_status_mb() -> dict:
    """Current (VmRSS) and peak (VmHWM) resident set size of this process, in MiB."""
    status = Path("/proc/self/status").read_text()
    values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {key: int(values[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: clear_refs 5); False if refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def memory_child(args) -> None:
    """Runs in a fresh interpreter: one training run; peak RSS over it (VmHWM, reset
    after the imports so that import-time transients are not counted)."""
    torch.set_num_threads(args.threads)
    baseline = memory_status_mb()["VmRSS"]
    reset = reset_peak_rss()
    source = ActivationStore(args.store, seed=0)
    opened = memory_status_mb()["VmHWM"]
    config = make_config(args.memory_child, args.expansion * source.d_in, args.short)
    with tempfile.TemporaryDirectory() as out_dir:
        train(config, source, out_dir, progress=False)
    peak = memory_status_mb()["VmHWM"]
    if not reset:  # peak since process start: import-time transients included
        peak = max(peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({"rss_after_imports_mb": baseline, "peak_after_store_open_mb": opened,
                      "rss_peak_mb": peak, "peak_reset": reset}))  # fmt: skip


def peak_memory(args, architecture: str) -> dict:
    command = [sys.executable, __file__, "--memory-child", architecture, "--store", args.store,
               "--expansion", str(args.expansion), "--short", str(args.short),
               "--threads", str(args.threads)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["train_peak_mb"] = report["rss_peak_mb"] - report["rss_after_imports_mb"]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", default="results/real/activations/eval")
    parser.add_argument("--expansion", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--short", type=int, default=3)
    parser.add_argument("--long", type=int, default=8)
    parser.add_argument("--bound-repeats", type=int, default=5)
    parser.add_argument(
        "--memory-archs", nargs="*", default=["topk", "relu"],
        help="architectures whose peak RSS is measured (relu: its dense start)",
    )  # fmt: skip
    parser.add_argument("--config", default="config.yaml", help="real.training of the runs")
    parser.add_argument("--run-store", default="results/real/activations/train")
    parser.add_argument("--run-steps", type=int, default=400)
    parser.add_argument(
        "--run-archs", nargs="*", default=["topk", "batchtopk", "jumprelu", "relu", "matryoshka"],
        help="architectures trained as whole runs from the standard initialisation",
    )  # fmt: skip
    parser.add_argument(
        "--only-runs", action="store_true", help="skip the steady/start/sparse rows"
    )  # fmt: skip
    parser.add_argument("--out", default="bench/out/real_throughput.csv")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args)
        return
    torch.set_num_threads(args.threads)
    probe = ActivationStore(args.store, seed=0, verify=False)
    d_in, n_tokens = probe.d_in, probe.n_tokens
    d_sae = args.expansion * d_in
    if args.long * BATCH > n_tokens:
        print(f"note: {args.long} steps of {BATCH} exceed the store's {n_tokens} tokens, so "
              "the timed steps include a group reload", flush=True)  # fmt: skip
    print(f"d = {d_in}, d_sae = {d_sae}, k = {K}, batch = {BATCH}, threads = {args.threads}, "
          f"store = {args.store} ({n_tokens} tokens)", flush=True)  # fmt: skip

    # Warm-up: the first train() call pays one-off lazy imports (optimiser -> dynamo).
    time_train(args.store, make_config("topk", d_sae, 1), None)
    theta = sparse_threshold(args.store, d_sae, "jumprelu")
    print(f"sparse-regime threshold (pre-activation quantile 1 - k/d_sae): {theta:.4f}", flush=True)

    rows = []
    for architecture, phase in [] if args.only_runs else CASES:
        overrides, bias = case_overrides(architecture, phase, theta)
        bound = dense_bound_seconds(d_in, d_sae, args.bound_repeats)
        short, last = time_train(args.store, make_config(architecture, d_sae, args.short,
                                                      **overrides), bias)  # fmt: skip
        long_config = make_config(architecture, d_sae, args.long, **overrides)
        long, _ = time_train(args.store, long_config, bias)
        step = (long - short) / (args.long - args.short)
        rows.append(timing_row(architecture, phase, d_in, long_config, args.threads, last["l0"],
                               step, bound))  # fmt: skip

    rows += run_rows(args) if args.run_archs else []

    store = store_seconds(args.store)
    print(f"store alone: open {store['store_open_seconds']:.2f} s; batch median "
          f"{store['store_batch_median_seconds'] * 1000:.1f} ms (slice), mean "
          f"{store['store_batch_mean_seconds'] * 1000:.1f} ms (group reloads amortised over "
          f"{store['store_batches_timed']} batches)", flush=True)  # fmt: skip
    frame = pd.DataFrame(rows)
    for key, value in store.items():
        frame[key] = value
    frame["store_share_of_step"] = store["store_batch_median_seconds"] / frame["step_seconds"]
    memory = {}
    for architecture in args.memory_archs:
        memory[architecture] = peak_memory(args, architecture)
        print(f"peak RSS, {architecture} ({args.short} steps, fresh process): "
              + ", ".join(f"{k} {v:,.0f}" for k, v in memory[architecture].items()),
              flush=True)  # fmt: skip
    for column in ("rss_after_imports_mb", "rss_peak_mb", "train_peak_mb"):
        frame[column] = [
            memory[a][column] if a in memory and p in ("steady", "start") else float("nan")
            for a, p in zip(frame["architecture"], frame["phase"], strict=True)
        ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    shown = ["architecture", "phase", "l0_last_step", "step_seconds", "samples_per_second",
             "bound_samples_per_second", "ratio_to_bound", "store_share_of_step",
             "train_peak_mb"]  # fmt: skip
    shown += [column for column in PHASE_COLUMNS if column in frame]
    print(frame[shown].to_string(index=False, float_format=lambda v: f"{v:,.3f}"))


if __name__ == "__main__":
    main()
