"""This project's training step side by side with the anchors' (run on demand, not in CI).

How fast is one optimiser step of `saesanity.core.training.train` compared with SAELens's
and dictionary_learning's trainers for the same architecture, shape and precision, on this
CPU? In ONE process, from the same seeded in-memory Gaussian batches (scaled so that
E||x||^2 = 1, the convention of both this trainer and dictionary_learning), with the same
torch threads (`--threads`), it times steady-state optimiser steps of:

- saesanity: the body of `train()`'s loop, mirrored step for step (`SaesanityRunner.step`:
  learning rate, `forward_train` with the BatchTopK cut-off hint and the last step's
  active fraction, `compute_loss`, backward, decoder-gradient projection, gradient
  clipping, Adam, `normalise_decoder`, dead-latent counters, `after_step`, the recorded
  active fraction and loss). A mirror rather than `train()` itself (as bench/throughput.py
  does, long run minus short run), because only a step function can be interleaved
  round-robin with the anchors'; data generation, logging and checkpoints are excluded
  for every trainer alike. The SAE is built and initialised by the trainer's own
  `build_sae` and `initialise_sae`. `--check-mirror` verifies the mirror: it trains a
  tiny SAE of each architecture for 4 steps with `train()` and with the mirror and fails
  unless the weights agree;
- sae_lens (the installed 6.x): `SAETrainer.step(batch)` (its public per-step seam:
  `training_forward_pass(TrainStepInput(...))` under its own autocast, dead-latent
  statistics, backward, clipping, Adam, schedulers) of `TopKTrainingSAE`,
  `BatchTopKTrainingSAE`, `JumpReLUTrainingSAE` and `StandardTrainingSAE` (ReLU), each
  with its defaults. TopK is timed in three settings (the `setting` column names them):
  its default (dense activations), `use_sparse_activations=True` (a sparse COO code and a
  sparse decoder product; with the default `rescale_acts_by_decoder_norm=True` its
  backward fails on CPU with torch 2.13, which the row records), and
  `use_sparse_activations=True, rescale_acts_by_decoder_norm=False`, which runs; the
  best anchor is the fastest setting that runs;
- dictionary_learning 0.1.0 (PyPI): `update(step, activations)` of `TopKTrainer`,
  `BatchTopKTrainer`, `JumpReluTrainer` and `StandardTrainer` (ReLU), with their
  defaults (threshold estimation from step 1 for the TopK family, as in the steady state
  of a run). `pip install dictionary-learning` would replace this project's torch (and add
  CUDA wheels, nnsight, ...), so it is NOT installed into the project's environment: it is
  unpacked without dependencies into the git-ignored folder bench/out/anchors_site,

      pip install --no-deps --target bench/out/anchors_site -r bench/anchors_requirements.txt

  and its trainer modules are imported from there without running the package's
  `__init__` (which imports nnsight for its activation buffer; the trainers need only
  torch and einops, both in this project's environment). `--dictionary-learning PATH`
  points elsewhere. Without it the rows record the error instead;
- the dense bound: the encoder GEMM forward plus its weight gradient at the shape and
  precision (as `time_bound` in bench/precision.py, with a given random output gradient),
  the work no SAE step avoids.

Precision (`--precision`): float32, or bfloat16 = `torch.autocast("cpu", dtype=bfloat16)`
with float32 weights, around the forward and loss (saesanity, as `train()` does; SAELens,
its `autocast=True`) or around `update()` (dictionary_learning, as its `trainSAE` does).
A trainer that fails records the error in the `error` column; the others go on.

Timing: `--warmup` rounds discarded, then `--steps` timed rounds; in each round every
trainer of the case (architecture, regime) and the bound take one step, in an order
rotated each round, so background load hits all alike; a row's time is the median over
its timed steps. `ratio_to_bound` = samples/s over the bound's samples/s of the same
case; `ratio_vs_best_anchor` (saesanity rows) = saesanity's samples/s over the fastest
anchor's. Dead latents: none are dead within a benchmark's steps for any trainer, so no
AuxK / auxiliary-loss work is timed (a like-for-like steady state). Each row reports the
L0 of its last step, which shows the regime.

Regimes: TopK and BatchTopK "steady" (always k per sample / k*B per batch). JumpReLU and
ReLU "start": each trainer's standard initialisation (saesanity: encoder norm 0.1,
threshold 0.001; about half the latents active except SAELens's JumpReLU, whose default
threshold 0.01 starts it near 1%); and "sparse": from the same initialisation, each
latent's threshold (JumpReLU) or encoder bias (ReLU, b_enc -= threshold) set from its own
pre-activations on the first batch so that a fraction k / d_sae of entries fire (L0 near
k), the regime of most of a run. The anchors compute densely in every regime.

Writes bench/out/anchors.csv (rows of this run's shapes and precision replace earlier ones;
others already in the file are kept, so a float32 and a bfloat16 run share one table) and
prints this run's rows.

    nice python bench/anchors.py [--precision float32|bfloat16] [--threads 2]
        [--shapes 576x2304 576x18432] [--k 40] [--batch 4096] [--warmup 1] [--steps 5]
        [--architectures topk batchtopk jumprelu relu] [--check-mirror]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import importlib.util
import math
import sys
import tempfile
import time
import types
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from saesanity.core.precision import autocast, resolve_precision
from saesanity.core.training import (
    TrainConfig,
    TrainState,
    build_sae,
    compute_loss,
    initialise_sae,
    learning_rate,
    set_trainable,
    train,
)

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out" / "anchors.csv"
DICTIONARY_LEARNING = BENCH / "out" / "anchors_site"
ARCHITECTURES = ("topk", "batchtopk", "jumprelu", "relu")
TRAINERS = ("saesanity", "sae_lens", "dictionary_learning")
# SAELens TopK: its default (dense activations) and its sparse decoder, which (torch 2.13,
# CPU) fails in backward with the default rescale_acts_by_decoder_norm=True and runs without.
SAELENS_TOPK_SETTINGS = [
    {"use_sparse_activations": False},
    {"use_sparse_activations": True},
    {"use_sparse_activations": True, "rescale_acts_by_decoder_norm": False},
]
COLUMNS = [
    "shape", "architecture", "regime", "trainer", "setting", "precision", "samples_per_s",
    "ratio_to_bound", "ratio_vs_best_anchor", "l0", "timed_steps", "threads", "error",
]  # fmt: skip


def precision_context(precision: str):
    if precision == "bfloat16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def per_latent_threshold(pre: torch.Tensor, k: int) -> torch.Tensor:
    """Each latent's value exceeded by a fraction k / d_sae of the batch's entries."""
    batch, d_sae = pre.shape
    above = max(1, round(batch * k / d_sae))
    return pre.float().kthvalue(batch - above, dim=0).values


class InMemorySource:
    """The benchmark's batches as an ActivationSource (batch t = batches[t mod n])."""

    identity = "bench-anchors"

    def __init__(self, batches: list[torch.Tensor]) -> None:
        self.batches, self.d_in = batches, batches[0].shape[1]

    def batch(self, step: int, batch_size: int) -> torch.Tensor:
        assert batch_size == self.batches[0].shape[0]
        return self.batches[step % len(self.batches)]


# ----------------------------------------------------------------------------- saesanity
def saesanity_config(architecture, d_sae, k, batch, steps, precision) -> TrainConfig:
    # Dense-start architectures use encoder norm 0.1 (the trainer's documented choice for
    # them, as in bench/throughput.py); the BatchTopK threshold EMA runs from the first
    # step, as in the steady state of a run.
    overrides = {"encoder_init_norm": 0.1} if architecture in ("relu", "jumprelu") else {}
    return TrainConfig(
        architecture=architecture, d_sae=d_sae, k=k, batch_size=batch,
        max_samples=batch * steps, min_samples=0, threshold_start_step=0,
        normalisation_batches=1, precision=precision, log_every_steps=10**9,
        checkpoint_every_steps=10**9, **overrides,
    )  # fmt: skip


class SaesanityRunner:
    """`train()`'s per-step work, mirrored from its loop body (see --check-mirror)."""

    trainer, setting = "saesanity", ""

    def __init__(self, config: TrainConfig, source: InMemorySource) -> None:
        self.config = config
        self.sae = sae = build_sae(config, source.d_in)
        self.state = TrainState()
        self.precision = resolve_precision(config.precision, "cpu")
        initialise_sae(sae, config, source)
        self.anchors = sae.W_dec.detach().clone()
        self.state.samples_since_fired = torch.zeros(config.d_sae, dtype=torch.long)
        set_trainable(sae, config.variant)
        self.trainable = [p for p in sae.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(  # fused, as train() on CPU
            self.trainable, lr=config.lr, betas=config.adam_betas, fused=True
        )
        self.decoder_trained = sae.W_dec.requires_grad

    def step(self, x: torch.Tensor):
        config, sae, state, optimizer = self.config, self.sae, self.state, self.optimizer
        step = state.step
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        hint = None if state.batch_topk_cutoff is None else 0.8 * state.batch_topk_cutoff
        dead = state.samples_since_fired >= config.dead_after_samples
        with autocast(self.precision, "cpu"):
            out = sae.forward_train(
                x, batch_topk_hint=hint, active_fraction_hint=state.active_fraction
            )
            loss, _ = compute_loss(sae, config, out, step, dead)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.decoder_trained:
            with torch.no_grad():
                grad = sae.W_dec.grad
                grad -= (grad * sae.W_dec).sum(1, keepdim=True) * sae.W_dec
        if config.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.trainable, config.grad_clip_norm)
        optimizer.step()
        with torch.no_grad():
            if self.decoder_trained:
                sae.normalise_decoder()
            state.samples_since_fired += config.batch_size
            state.samples_since_fired[out.fired] = 0
            sae.after_step(out, config, step, state)
            state.active_fraction = float(out.l0_per_sample.mean()) / config.d_sae
        state.loss_history.append(float(loss.detach()))
        state.step += 1
        return out

    def l0(self, out, x) -> float:
        return float(out.l0_per_sample.mean())

    @torch.no_grad()
    def preactivations(self, x: torch.Tensor) -> torch.Tensor:
        sae = self.sae
        return F.linear(x * sae.input_scale - sae.b_dec, sae.W_enc, sae.b_enc)

    @torch.no_grad()
    def make_sparse(self, threshold: torch.Tensor) -> None:
        if self.config.architecture == "jumprelu":
            self.sae.threshold.copy_(threshold.clamp_min(0))
        else:
            self.sae.b_enc.sub_(threshold)


def check_mirror(precision: str) -> None:
    """Train a tiny SAE of each architecture with `train()` and with the mirror."""
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randn(256, 32, generator=generator) / math.sqrt(32) for _ in range(4)]
    source = InMemorySource(batches)
    for architecture in ARCHITECTURES:
        config = saesanity_config(architecture, 128, 8, 256, 4, precision)
        with tempfile.TemporaryDirectory() as out_dir:
            reference = train(config, source, out_dir, progress=False)
        runner = SaesanityRunner(config, source)
        for step in range(config.max_steps):
            runner.step(source.batch(step, config.batch_size))
        for name, value in reference.state_dict().items():
            mine = runner.sae.state_dict()[name]
            if not torch.allclose(value, mine, rtol=1e-5, atol=1e-6):
                raise SystemExit(
                    f"mirror != train() for {architecture} {precision}: {name} differs by "
                    f"{(value - mine).abs().max():.3g}; update SaesanityRunner.step"
                )
        print(f"mirror == train() for {architecture} ({precision}, 4 steps)", flush=True)


# ------------------------------------------------------------------------------ SAELens
class SAELensRunner:
    trainer = "sae_lens"

    def __init__(self, architecture, d_in, d_sae, k, batch, precision, topk_options=None):
        from sae_lens.config import SAETrainerConfig
        from sae_lens.saes import (
            BatchTopKTrainingSAE,
            BatchTopKTrainingSAEConfig,
            JumpReLUTrainingSAE,
            JumpReLUTrainingSAEConfig,
            StandardTrainingSAE,
            StandardTrainingSAEConfig,
            TopKTrainingSAE,
            TopKTrainingSAEConfig,
        )
        from sae_lens.training.sae_trainer import SAETrainer

        self.architecture = architecture
        self.setting = ""
        if architecture == "topk":
            options = topk_options or {}
            self.setting = ", ".join(f"{name}={value}" for name, value in options.items())
            sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k, **options))
        elif architecture == "batchtopk":
            sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k))
        elif architecture == "jumprelu":
            sae = JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=d_in, d_sae=d_sae))
        else:
            sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae))
        self.sae = sae
        config = SAETrainerConfig(
            total_training_samples=batch * 10**6, train_batch_size_samples=batch,
            device="cpu", autocast=precision == "bfloat16",
            lr_end=3e-5,  # what LanguageModelSAERunnerConfig sets (lr / 10)
        )  # fmt: skip
        self.trainer_ = SAETrainer(config, sae, data_provider=iter(()))

    def step(self, x: torch.Tensor):
        output = self.trainer_.step(x)
        self.trainer_.n_training_steps += 1
        return output

    def l0(self, output, x) -> float:
        acts = output.feature_acts
        nonzero = (acts.coalesce().values() != 0).sum() if acts.is_sparse else (acts != 0).sum()
        return float(nonzero) / x.shape[0]

    @torch.no_grad()
    def preactivations(self, x: torch.Tensor) -> torch.Tensor:
        return self.sae.encode_with_hidden_pre(x)[1]

    @torch.no_grad()
    def make_sparse(self, threshold: torch.Tensor) -> None:
        if self.architecture == "jumprelu":
            self.sae.threshold.copy_(threshold.clamp_min(0))
        else:
            self.sae.b_enc.sub_(threshold)


# -------------------------------------------------------------------- dictionary_learning
def import_dictionary_learning(path: Path) -> dict:
    """dictionary_learning's trainer modules, without the package's `__init__` (which
    imports nnsight for ActivationBuffer; the trainers need only torch and einops)."""
    if "dictionary_learning" not in sys.modules:
        spec = importlib.util.find_spec("dictionary_learning")
        root = Path(spec.submodule_search_locations[0]) if spec else path / "dictionary_learning"
        if not (root / "trainers" / "top_k.py").exists():
            raise ModuleNotFoundError(
                f"dictionary_learning not found (looked in the environment and {path}); "
                "pip install --no-deps --target bench/out/anchors_site "
                "-r bench/anchors_requirements.txt"
            )
        for name, folder in (("dictionary_learning", root),
                             ("dictionary_learning.trainers", root / "trainers")):  # fmt: skip
            package = types.ModuleType(name)
            package.__path__ = [str(folder)]
            sys.modules[name] = package
    modules = {
        name: importlib.import_module(f"dictionary_learning.trainers.{name}")
        for name in ("top_k", "batch_top_k", "jumprelu", "standard")
    }
    return {
        "topk": modules["top_k"].TopKTrainer,
        "batchtopk": modules["batch_top_k"].BatchTopKTrainer,
        "jumprelu": modules["jumprelu"].JumpReluTrainer,
        "relu": modules["standard"].StandardTrainer,
    }


class DictionaryLearningRunner:
    trainer, setting = "dictionary_learning", ""

    def __init__(self, architecture, d_in, d_sae, k, precision, path: Path) -> None:
        classes = import_dictionary_learning(path)
        common = {"steps": 10**6, "activation_dim": d_in, "dict_size": d_sae, "layer": 0,
                  "lm_name": "bench", "device": "cpu"}  # fmt: skip
        if architecture in ("topk", "batchtopk"):
            self.trainer_ = classes[architecture](k=k, threshold_start_step=0, seed=0, **common)
        elif architecture == "jumprelu":
            self.trainer_ = classes[architecture](target_l0=k, seed=0, **common)
        else:
            self.trainer_ = classes[architecture](seed=0, **common)
        self.architecture, self.precision, self.n = architecture, precision, 0

    def step(self, x: torch.Tensor):
        with precision_context(self.precision):
            self.trainer_.update(self.n, x)
        self.n += 1

    @torch.no_grad()
    def l0(self, _, x) -> float:
        with precision_context(self.precision):
            features = self.trainer_.loss(x, step=self.n, logging=True).f
        return float((features != 0).sum()) / x.shape[0]

    @torch.no_grad()
    def preactivations(self, x: torch.Tensor) -> torch.Tensor:
        ae = self.trainer_.ae
        if self.architecture == "jumprelu":
            return x @ ae.W_enc + ae.b_enc  # as JumpReluTrainer.loss (no b_dec)
        return ae.encoder(x - ae.bias)

    @torch.no_grad()
    def make_sparse(self, threshold: torch.Tensor) -> None:
        ae = self.trainer_.ae
        if self.architecture == "jumprelu":
            ae.threshold.copy_(threshold.clamp_min(0))
        else:
            ae.encoder.bias.sub_(threshold)


# ------------------------------------------------------------------------------- bound
class BoundRunner:
    """Encoder GEMM forward + its weight gradient: the dense work of every SAE step."""

    trainer, setting = "dense_bound", "encoder GEMM + weight gradient"

    def __init__(self, d_in, d_sae, batch, precision) -> None:
        generator = torch.Generator().manual_seed(2)
        self.W = torch.randn(d_sae, d_in, generator=generator).requires_grad_()
        self.grad = torch.randn(batch, d_sae, generator=generator)
        self.precision = precision

    def step(self, x: torch.Tensor):
        with precision_context(self.precision):
            pre = x @ self.W.T
        pre.backward(self.grad.to(pre.dtype))
        self.W.grad = None

    def l0(self, _, x) -> float:
        return math.nan


# ------------------------------------------------------------------------------ driver
def build_runners(architecture, regime, d_in, d_sae, args, batches) -> tuple[list, list]:
    """(runners, failed rows) of one case; the bound first."""
    batch, k = args.batch, args.k
    factories = [("dense_bound", "", lambda: BoundRunner(d_in, d_sae, batch, args.precision))]
    if "saesanity" in args.trainers:
        config = saesanity_config(architecture, d_sae, k, batch, 10**6, args.precision)
        factories.append(
            ("saesanity", "", lambda: SaesanityRunner(config, InMemorySource(batches)))
        )
    if "sae_lens" in args.trainers:
        for options in SAELENS_TOPK_SETTINGS if architecture == "topk" else [{}]:
            setting = ", ".join(f"{name}={value}" for name, value in options.items())
            factories.append(("sae_lens", setting, lambda options=options: SAELensRunner(
                architecture, d_in, d_sae, k, batch, args.precision, options)))  # fmt: skip
    if "dictionary_learning" in args.trainers:
        where = Path(args.dictionary_learning)
        factories.append(("dictionary_learning", "", lambda: DictionaryLearningRunner(
            architecture, d_in, d_sae, k, args.precision, where)))  # fmt: skip
    runners, failed = [], []
    for trainer, setting, factory in factories:
        torch.manual_seed(args.seed)
        try:
            runner = factory()
            if regime == "sparse" and trainer != "dense_bound":
                runner.make_sparse(per_latent_threshold(runner.preactivations(batches[0]), k))
            runners.append(runner)
        except Exception as error:
            failed.append({"trainer": trainer, "setting": setting, "error": describe(error)})
    return runners, failed


def describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}".replace("\n", " ")[:300]


def time_case(runners: list, batches: list[torch.Tensor], warmup: int, steps: int) -> list:
    """Round-robin steps (order rotated each round); per runner: times, L0, error."""
    results = {id(r): {"times": [], "l0": math.nan, "error": ""} for r in runners}
    alive = list(runners)
    rounds = warmup + steps
    for round_index in range(rounds):
        x = batches[round_index % len(batches)]
        shift = round_index % max(1, len(alive))
        for runner in alive[shift:] + alive[:shift]:
            result = results[id(runner)]
            if result["error"]:
                continue
            try:
                started = time.perf_counter()
                output = runner.step(x)
                elapsed = time.perf_counter() - started
                if round_index >= warmup:
                    result["times"].append(elapsed)
                if round_index == rounds - 1:
                    result["l0"] = runner.l0(output, x)
                del output
            except Exception as error:  # e.g. an op without a bf16 kernel: record it
                result["error"] = describe(error)
    return [results[id(r)] for r in runners]


def run_shape(d_in: int, d_sae: int, args) -> list[dict]:
    generator = torch.Generator().manual_seed(args.seed)
    batches = [
        torch.randn(args.batch, d_in, generator=generator) / math.sqrt(d_in)
        for _ in range(args.batches)
    ]
    shape = f"{d_in}x{d_sae}"
    cases = []
    for architecture in args.architectures:
        regimes = ("start", "sparse") if architecture in ("jumprelu", "relu") else ("steady",)
        cases += [(architecture, regime) for regime in regimes]
    rows = []
    for architecture, regime in cases:
        started = time.perf_counter()
        runners, failed = build_runners(architecture, regime, d_in, d_sae, args, batches)
        timed = time_case(runners, batches, args.warmup, args.steps)
        base = {"shape": shape, "architecture": architecture, "regime": regime,
                "precision": args.precision, "threads": args.threads}  # fmt: skip
        case_rows = [{**base, **row} for row in failed]
        for runner, result in zip(runners, timed, strict=True):
            times = sorted(result["times"])
            speed = args.batch / times[len(times) // 2] if times and not result["error"] else None
            case_rows.append({**base, "trainer": runner.trainer, "setting": runner.setting,
                              "samples_per_s": speed, "l0": result["l0"],
                              "timed_steps": len(times), "error": result["error"]})  # fmt: skip
        finish_case(case_rows)
        rows += case_rows
        del runners
        gc.collect()
        print(f"{shape} {architecture} {regime}: {time.perf_counter() - started:.0f} s",
              flush=True)  # fmt: skip
        print(pd.DataFrame(case_rows).reindex(columns=COLUMNS).to_string(index=False), flush=True)
    return rows


def finish_case(rows: list[dict]) -> None:
    """Ratios to the case's bound and, for saesanity, to the fastest anchor."""

    def speed(row):
        return row.get("samples_per_s") or math.nan

    bound = next((speed(r) for r in rows if r["trainer"] == "dense_bound"), math.nan)
    anchors = [speed(r) for r in rows if r["trainer"] in ("sae_lens", "dictionary_learning")]
    anchors = [s for s in anchors if not math.isnan(s)]
    best = max(anchors) if anchors else math.nan
    for row in rows:
        row["ratio_to_bound"] = speed(row) / bound
        if row["trainer"] == "saesanity":
            row["ratio_vs_best_anchor"] = speed(row) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", nargs="+", default=["576x2304", "576x18432"],
                        help="d_in x d_sae")  # fmt: skip
    parser.add_argument("--k", type=int, default=40)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--batches", type=int, default=4, help="distinct batches, cycled")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--architectures", nargs="+", choices=ARCHITECTURES,
                        default=list(ARCHITECTURES))  # fmt: skip
    parser.add_argument("--trainers", nargs="+", choices=TRAINERS, default=list(TRAINERS))
    parser.add_argument("--dictionary-learning", default=str(DICTIONARY_LEARNING),
                        help="folder holding the unpacked dictionary_learning package")  # fmt: skip
    parser.add_argument("--check-mirror", action="store_true",
                        help="verify the saesanity step mirror against train() first")  # fmt: skip
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.check_mirror:
        check_mirror(args.precision)
    rows = []
    for shape in args.shapes:
        d_in, d_sae = (int(n) for n in shape.lower().split("x"))
        rows += run_shape(d_in, d_sae, args)
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():  # keep rows of other shapes / precisions from earlier runs
        earlier = pd.read_csv(out)
        earlier = earlier[~(earlier["shape"].isin(table["shape"])
                            & (earlier["precision"] == args.precision))]  # fmt: skip
        table = pd.concat([earlier.reindex(columns=COLUMNS), table], ignore_index=True)
    table.to_csv(out, index=False)
    mine = table[table["precision"] == args.precision]
    mine = mine[mine["shape"].isin([s.lower() for s in args.shapes])]
    with pd.option_context("display.width", 250, "display.max_colwidth", 60):
        print(mine.round(3).to_string(index=False))
    print(f"written {out}")


if __name__ == "__main__":
    main()
