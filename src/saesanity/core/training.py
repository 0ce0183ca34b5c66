"""The one trainer behind every SAE and random baseline in the workflow.

Architectures: relu (L1), topk, batchtopk, jumprelu (target-L0 loss),
matryoshka (BatchTopK with nested groups). Variants, all from the same seed,
hence the same initial directions and the same data order:

- trained:              everything is trained;
- frozen_decoder:       decoder rows stay at their random initial directions;
- soft_frozen_decoder:  decoder rows are trained, then projected back into the
                        cap cos(d, d_init) >= tau after every optimiser step;
- frozen_encoder:       encoder rows stay at their random initial directions;
                        b_enc, thresholds and the decoder are trained.

Inits: `iso` (uniform on the sphere) and `cov` (Gaussian with the data's covariance)
are the study's random directions; `truth` (synthetic data only) starts the decoder at
the ground-truth dictionary, so `frozen_decoder` + `truth` is the reference SAE whose
dictionary is exactly right and only the encoder is learned.

Training state (weights, optimiser, counters, curve) is checkpointed every
`checkpoint_every_steps` to `<out_dir>/train_state.pt`; a later call with the
same config resumes from it and ends with the same weights as an
uninterrupted run, because batch t is a pure function of (seed, t).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from saesanity.core.architectures import ARCHITECTURES, REGISTRY, make_sae
from saesanity.core.architectures.topk import AUXK_VALUES
from saesanity.core.checkpoint import atomic_write, save_sae
from saesanity.core.data import ActivationSource, derive_seed, estimate_covariance
from saesanity.core.device import check_device
from saesanity.core.precision import PRECISIONS, autocast, resolve_precision
from saesanity.core.sae import (
    SparseAutoencoder,
    TrainForward,
    covariance_directions,
    project_to_caps,
    unit_sphere_directions,
)

VARIANTS = ("trained", "frozen_decoder", "soft_frozen_decoder", "frozen_encoder")
RANDOM_INITS = ("iso", "cov")
INITS = (*RANDOM_INITS, "truth")

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that determines a run. Defaults follow the anchors (see config.yaml)."""

    architecture: str
    d_sae: int
    k: int  # TopK family: latents kept; JumpReLU: target L0; ReLU: unused (reported only)
    variant: str = "trained"
    init: str = "iso"
    seed: int = 0
    batch_size: int = 4096
    # Length: at most max_samples; stop earlier once the training loss (the
    # objective itself, so JumpReLU's L0 term counts) has plateaued: relative
    # improvement between two consecutive windows below plateau_rel_tol, never
    # before min_samples. plateau_rel_tol = 0 disables.
    max_samples: int = 4_000_000
    min_samples: int = 1_000_000
    plateau_window_samples: int = 500_000
    plateau_rel_tol: float = 0.0
    lr: float = 4e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    decay_fraction: float = 0.0  # linear decay to 0 over this final fraction of max_samples
    grad_clip_norm: float = 1.0
    normalisation_batches: int = 10
    b_dec_init: str = "mean"  # "mean" of the first batch, or "zeros"
    # Encoder rows start as the decoder's, scaled to this norm. 1 for the TopK
    # family; dense-start architectures (ReLU, JumpReLU) overshoot by ~d_sae/(2 d_in)
    # with 1, so they use 0.1 (SAELens' and dictionary_learning's ReLU init scale).
    encoder_init_norm: float = 1.0
    covariance_batches: int = 10  # for init == "cov"
    soft_freeze_tau: float = 0.8
    # AuxK (TopK family): dead = not fired for dead_after_samples samples.
    auxk_coefficient: float = 1.0 / 32
    auxk_k: int | None = None  # default d_in // 2
    # What dead latents reconstruct with: "post_relu" (dictionary_learning) or
    # "pre_activation" (SAELens: negative values too, so every dead latent can learn).
    auxk_values: str = "post_relu"
    dead_after_samples: int = 1_000_000
    # BatchTopK / Matryoshka inference threshold: EMA of the smallest kept activation.
    threshold_ema: float = 0.99
    threshold_start_step: int = 100
    # ReLU
    l1_coefficient: float = 0.06
    l1_warmup_steps: int = 100
    # JumpReLU
    jumprelu_bandwidth: float = 0.001
    jumprelu_threshold_init: float = 0.001
    target_l0_coefficient: float = 1.0
    sparsity_warmup_steps: int = 200
    # Matryoshka
    group_fractions: list[float] = field(default_factory=lambda: [0.5, 0.3, 0.2])
    # float32, bfloat16 (autocast, float32 master weights) or auto (bfloat16 where the
    # device multiplies it natively); see saesanity.core.precision.
    precision: str = "float32"
    # Bookkeeping
    log_every_steps: int = 10
    checkpoint_every_steps: int = 100
    snapshot_samples: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.adam_betas = tuple(self.adam_betas)
        checks = {
            "architecture": (self.architecture in ARCHITECTURES, f"one of {ARCHITECTURES}"),
            "variant": (self.variant in VARIANTS, f"one of {VARIANTS}"),
            "init": (self.init in INITS, f"one of {INITS}"),
            "soft_freeze_tau": (0 < self.soft_freeze_tau <= 1, "a value in (0, 1]"),
            "max_samples": (self.max_samples >= self.batch_size, ">= batch_size"),
            "batch_size": (self.batch_size > 0, "> 0"),
            "k": (0 < self.k <= self.d_sae, f"> 0 and <= d_sae ({self.d_sae})"),
            "lr": (self.lr > 0, "> 0"),
            "encoder_init_norm": (self.encoder_init_norm > 0, "> 0"),
            "b_dec_init": (self.b_dec_init in ("mean", "zeros"), "'mean' or 'zeros'"),
            "precision": (self.precision in PRECISIONS, f"one of {PRECISIONS}"),
            "auxk_values": (self.auxk_values in AUXK_VALUES, f"one of {AUXK_VALUES}"),
            # BatchTopK's inference threshold must be estimated before the run ends, or the
            # SAE has none (and would be exported as a ReLU).
            "threshold_start_step": (
                not getattr(REGISTRY.get(self.architecture), "estimates_threshold", False)
                or self.threshold_start_step < self.max_samples // max(1, self.batch_size),
                f"< the run's {self.max_samples // max(1, self.batch_size)} steps "
                "(max_samples / batch_size), so the inference threshold is estimated",
            ),
        }
        for key, (ok, expected) in checks.items():
            if not ok:
                raise ValueError(f"TrainConfig.{key} = {getattr(self, key)!r}: expected {expected}")

    @property
    def max_steps(self) -> int:
        return self.max_samples // self.batch_size

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, constant, optional linear decay to 0 at the end."""
    scale = 1.0
    if config.warmup_steps > 0:
        scale = min(1.0, (step + 1) / config.warmup_steps)
    if config.decay_fraction > 0:
        decay_start = int(config.max_steps * (1 - config.decay_fraction))
        if step >= decay_start:
            scale *= max(0.0, (config.max_steps - step) / max(1, config.max_steps - decay_start))
    return config.lr * scale


def build_sae(config: TrainConfig, d_in: int) -> SparseAutoencoder:
    return make_sae(
        config.architecture,
        d_in,
        config.d_sae,
        k=config.k,
        group_fractions=config.group_fractions,
        jumprelu_bandwidth=config.jumprelu_bandwidth,
        jumprelu_threshold_init=config.jumprelu_threshold_init,
    )


@torch.no_grad()
def initialise_sae(sae: SparseAutoencoder, config: TrainConfig, source: ActivationSource) -> None:
    """Input scale, b_dec and random directions, all from the seed and the source."""
    first_batches = [
        source.batch(step, config.batch_size) for step in range(config.normalisation_batches)
    ]
    # dictionary_learning's convention: scale inputs so that E||x||^2 = 1. A source
    # that knows its normalisation constant (an activation store) provides it.
    input_scale = getattr(source, "input_scale", None)
    if input_scale is None:
        mean_sq_norm = torch.stack([x.pow(2).sum(1).mean() for x in first_batches]).mean()
        input_scale = float(1.0 / mean_sq_norm.sqrt())
    sae.input_scale.fill_(float(input_scale))
    generator = torch.Generator().manual_seed(derive_seed(config.seed, "sae_init"))
    if config.init == "iso":
        directions = unit_sphere_directions(config.d_sae, sae.d_in, generator)
    elif config.init == "truth":
        directions = ground_truth_directions(config, source)
    else:
        covariance = estimate_covariance(source, config.covariance_batches, config.batch_size)
        directions = covariance_directions(config.d_sae, covariance, generator)
    b_dec = torch.zeros(sae.d_in)
    if config.b_dec_init == "mean":
        b_dec = first_batches[0].mean(0) * sae.input_scale
    sae.initialise(directions, b_dec, config.encoder_init_norm)


def ground_truth_directions(config: TrainConfig, source: ActivationSource) -> torch.Tensor:
    """The source's ground-truth dictionary, one feature per latent (init "truth")."""
    truth = getattr(source, "truth", None)
    if truth is None:
        raise ValueError(
            f"TrainConfig.init = 'truth' needs data with known features (synthetic); "
            f"{type(source).__name__} has no ground truth: use iso or cov"
        )
    if truth.features.shape[0] != config.d_sae:
        raise ValueError(
            f"TrainConfig.init = 'truth': d_sae = {config.d_sae}, but the ground truth has "
            f"{truth.features.shape[0]} features; set d_sae to that number"
        )
    return truth.features.clone()


def set_trainable(sae: SparseAutoencoder, variant: str) -> None:
    sae.W_dec.requires_grad_(variant not in ("frozen_decoder",))
    sae.W_enc.requires_grad_(variant != "frozen_encoder")


def compute_loss(
    sae: SparseAutoencoder,
    config: TrainConfig,
    out: TrainForward,
    step: int,
    dead: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its named parts. Reconstruction error is in normalised units."""
    mse = (out.x_scaled - out.x_hat).pow(2).sum(1).mean()
    loss = sae.reconstruction_loss(out, mse)
    name, term, weight = sae.sparsity_loss(out, config, step, dead)
    parts = {"mse": mse, name: term}
    loss = loss + weight * term
    return loss, {name: float(value.detach()) for name, value in parts.items()}


@dataclass
class TrainState:
    step: int = 0
    samples_since_fired: torch.Tensor | None = None
    batch_topk_cutoff: float | None = None
    active_fraction: float | None = None  # of the last step's (sample, latent) entries
    loss_history: list[float] = field(default_factory=list)
    curve: list[dict] = field(default_factory=list)
    stop_reason: str = ""
    wall_seconds: float = 0.0
    precision: str = ""  # what config.precision resolved to on this device


def plateaued(config: TrainConfig, history: list[float]) -> bool:
    """True when the mean training loss of the last window improved on the window
    before by less than plateau_rel_tol (relative)."""
    if config.plateau_rel_tol <= 0:
        return False
    window = max(1, config.plateau_window_samples // config.batch_size)
    samples = len(history) * config.batch_size
    if samples < config.min_samples or len(history) < 2 * window or len(history) % window:
        return False
    previous = sum(history[-2 * window : -window]) / window
    current = sum(history[-window:]) / window
    return (previous - current) / max(previous, 1e-12) < config.plateau_rel_tol


def resume_fingerprint(config: TrainConfig, source: ActivationSource, precision: str) -> str:
    """The identity a saved training state must have to be resumed: the training config,
    the data (a source's `identity`: a store's manifest, a ground truth's hash) and the
    precision the config resolved to on this device."""
    data = getattr(source, "identity", None)
    if data is None:
        raise TypeError(
            f"{type(source).__name__} has no `identity`: training could not tell, on "
            "resume, whether the data is still the data the state was trained on"
        )
    identity = f"{config.fingerprint()}:{data}:{precision}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _save_state(path: Path, sae, optimizer, state: TrainState, anchors, fingerprint) -> None:
    payload = {
        "fingerprint": fingerprint,
        "model": sae.state_dict(),
        "optimizer": optimizer.state_dict(),
        "anchors": anchors,
        "state": state.__dict__,
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def run_label(out_dir: Path) -> str:
    """How a run names itself in logs: its folder, relative to the working directory
    (results/real/runs/batchtopk/trained/iso/l0_40/seed0), not only "seed0"."""
    try:
        return str(out_dir.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(out_dir)


def train(
    config: TrainConfig,
    source: ActivationSource,
    out_dir: str | Path,
    device: str = "cpu",
    progress: bool = True,
    stop_after_steps: int | None = None,
) -> SparseAutoencoder:
    """Train one SAE or baseline and write sae.safetensors, sae.json and curve.csv.

    `stop_after_steps` interrupts the run after that many steps in this call
    (leaving a resumable state), which is how tests simulate a kill.
    """
    device = check_device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / "train_state.pt"
    sae = build_sae(config, source.d_in)
    state = TrainState()
    resumed = False
    precision = resolve_precision(config.precision, device)
    fingerprint = resume_fingerprint(config, source, precision)
    if state_path.exists():
        saved = torch.load(state_path, map_location="cpu", weights_only=False)
        missing = _missing_snapshots(config, out_dir, saved["state"]["step"])
        if saved["fingerprint"] != fingerprint:
            log.warning(
                "ignoring %s: it was written with another training config or other data",
                state_path,
            )
        elif missing:
            # A snapshot from before the saved step cannot be made again by resuming (a
            # workflow that forces a rerun deletes the old outputs, not the state).
            log.warning(
                "ignoring %s: its snapshots at %s samples are gone and only a run from "
                "the start writes them again",
                state_path, ", ".join(f"{samples:,d}" for samples in missing),
            )  # fmt: skip
        else:
            sae.load_state_dict(saved["model"])
            anchors = saved["anchors"]
            state = TrainState(**saved["state"])
            resumed = True
            log.info("resuming %s from step %d", out_dir, state.step)
    if not resumed:
        log.info(
            "training %s: %s %s %s, %d steps of %d samples, %s",
            run_label(out_dir), config.architecture, config.variant, config.init,
            config.max_steps, config.batch_size, precision,
        )  # fmt: skip
        initialise_sae(sae, config, source)
        anchors = sae.W_dec.detach().clone()
        state.samples_since_fired = torch.zeros(config.d_sae, dtype=torch.long)
    state.precision = precision
    sae.to(device)
    anchors = anchors.to(device)
    set_trainable(sae, config.variant)
    trainable = [p for p in sae.parameters() if p.requires_grad]
    # The fused kernel: one pass over each parameter instead of a dozen elementwise ops
    # (~3x faster Adam steps on CPU at d_sae 2,304, where Adam was ~20% of a TopK step;
    # the result differs from the unfused one only in float32 rounding, ~1e-7).
    fused = torch.device(device).type in ("cpu", "cuda")
    optimizer = torch.optim.Adam(
        trainable, lr=config.lr, betas=config.adam_betas, **({"fused": True} if fused else {})
    )
    if resumed:
        optimizer.load_state_dict(saved["optimizer"])
    samples_since_fired = state.samples_since_fired.to(device)
    decoder_trained = sae.W_dec.requires_grad

    steps_this_call = 0
    started = time.perf_counter()
    wall_before = state.wall_seconds
    bar = tqdm(
        total=config.max_steps, initial=state.step, disable=not progress, desc=run_label(out_dir),
        mininterval=5.0, unit="step",
    )  # fmt: skip
    while state.step < config.max_steps and not state.stop_reason:
        step = state.step
        x = source.batch(step, config.batch_size).to(device)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        hint = None if state.batch_topk_cutoff is None else 0.8 * state.batch_topk_cutoff
        dead = samples_since_fired >= config.dead_after_samples
        with autocast(precision, device):
            out = sae.forward_train(
                x, batch_topk_hint=hint, active_fraction_hint=state.active_fraction
            )
            loss, parts = compute_loss(sae, config, out, step, dead)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if decoder_trained:
            # Keep decoder rows unit-norm: drop the gradient component along each row.
            with torch.no_grad():
                grad = sae.W_dec.grad
                grad -= (grad * sae.W_dec).sum(1, keepdim=True) * sae.W_dec
        if config.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip_norm)
        optimizer.step()
        with torch.no_grad():
            if decoder_trained:
                sae.normalise_decoder()
            if config.variant == "soft_frozen_decoder":
                sae.W_dec.copy_(project_to_caps(sae.W_dec, anchors, config.soft_freeze_tau))
            samples_since_fired += config.batch_size
            samples_since_fired[out.fired] = 0
            sae.after_step(out, config, step, state)
            state.active_fraction = float(out.l0_per_sample.mean()) / config.d_sae
        state.loss_history.append(float(loss.detach()))
        state.step += 1
        steps_this_call += 1
        bar.update(1)
        if state.step % config.log_every_steps == 0 or state.step == config.max_steps:
            with torch.no_grad():
                variance = (out.x_scaled - out.x_scaled.mean(0)).pow(2).sum(1).mean()
                row = {
                    "step": state.step,
                    "samples": state.step * config.batch_size,
                    "loss": float(loss.detach()),
                    **parts,
                    "explained_variance": 1 - parts["mse"] / float(variance),
                    "l0": float(out.l0_per_sample.mean()),
                    "dead_fraction": float(dead.float().mean()),
                    "lr": learning_rate(config, step),
                }
            state.curve.append(row)
            bar.set_postfix(ev=f"{row['explained_variance']:.3f}", l0=f"{row['l0']:.1f}")
        samples_seen = state.step * config.batch_size
        if samples_seen in config.snapshot_samples:
            # The full state_dict (BatchTopK's inference threshold included) and the same
            # metadata as the final checkpoint, so a snapshot is evaluated like a final run.
            state.wall_seconds = wall_before + time.perf_counter() - started
            save_sae(
                sae, *_snapshot_paths(out_dir, samples_seen),
                {**_metadata(config, state), "stop_reason": "snapshot"},
                extra_tensors={"W_dec_init": anchors},
            )  # fmt: skip
        if plateaued(config, state.loss_history):
            state.stop_reason = "plateau"
        finished = state.step >= config.max_steps or bool(state.stop_reason)
        interrupted = stop_after_steps is not None and steps_this_call >= stop_after_steps
        if state.step % config.checkpoint_every_steps == 0 or finished or interrupted:
            state.samples_since_fired = samples_since_fired.cpu()
            state.wall_seconds = wall_before + time.perf_counter() - started
            _save_state(state_path, sae, optimizer, state, anchors, fingerprint)
        if interrupted and not finished:
            bar.close()
            return sae
    bar.close()
    state.stop_reason = state.stop_reason or "max_samples"
    _write_outputs(sae, config, state, anchors, out_dir)
    state_path.unlink(missing_ok=True)
    return sae


def _snapshot_paths(out_dir: Path, samples: int) -> tuple[Path, Path]:
    stem = out_dir / "snapshots" / f"samples{samples}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def _missing_snapshots(config: TrainConfig, out_dir: Path, step: int) -> list[int]:
    """Snapshot points a run saved at `step` has passed whose files are not there."""
    passed = [s for s in config.snapshot_samples if s <= step * config.batch_size]
    return [s for s in passed if not all(p.exists() for p in _snapshot_paths(out_dir, s))]


def _write_outputs(sae, config, state: TrainState, anchors, out_dir: Path) -> None:
    import pandas as pd

    save_sae(
        sae.cpu(), out_dir / "sae.safetensors", out_dir / "sae.json", _metadata(config, state),
        extra_tensors={"W_dec_init": anchors.cpu()},
    )  # fmt: skip
    curve = pd.DataFrame(state.curve)
    atomic_write(out_dir / "curve.csv", lambda tmp: curve.to_csv(tmp, index=False))


def _metadata(config: TrainConfig, state: TrainState) -> dict:
    return {
        "train_config": asdict(config),
        "samples_seen": state.step * config.batch_size,
        "steps": state.step,
        "stop_reason": state.stop_reason,
        "precision": state.precision,
        "wall_seconds": round(state.wall_seconds, 2),
        "final_loss_window_change": _final_relative_change(config, state.loss_history),
    }


def _final_relative_change(config: TrainConfig, history: list[float]) -> float:
    """Relative loss improvement of the last plateau window over the one before
    (the convergence diagnostic reported for every run)."""
    window = max(1, config.plateau_window_samples // config.batch_size)
    if len(history) < 2 * window:
        return math.nan
    previous = sum(history[-2 * window : -window]) / window
    current = sum(history[-window:]) / window
    return (previous - current) / max(previous, 1e-12)
