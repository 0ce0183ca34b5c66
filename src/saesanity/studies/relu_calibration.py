"""ReLU's L1 coefficient, calibrated per run to hit a target L0 on held-out tokens.

ReLU + L1 has no target-L0 mechanism, and one coefficient gives each variant a
different L0: a random, frozen decoder needs more active latents to reconstruct than a
trained one. Runs compared at one L0 therefore each get their own coefficient, chosen
by one documented criterion: the held-out L0 (the workflow's evaluation: `eval_tokens`
of the eval store, same outlier rule) within `tolerance` of the target, training with
the run's own config (same steps, schedule, seed and data order).

Search: start from the run's configured coefficient, then secant steps on log(L0) vs
log(L1) (the first step assumes `slope`), at most `max_trials` trainings, each step at
most x4 either way.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

from saesanity.core.training import TrainConfig, train
from saesanity.evals.metrics import reconstruction_metrics
from saesanity.sources.activation_store import ActivationStore

log = logging.getLogger(__name__)


def held_out_metrics(
    values: dict,
    train_store: str | Path,
    eval_store: str | Path,
    eval_tokens: int,
    batch_size: int,
    shuffle_shards: int = 4,
    outlier_factor: float | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """Train one run with TrainConfig `values` (in a temporary folder) and measure its
    held-out EV, L0 and dead fraction as the workflow's evaluation does."""
    store = ActivationStore(
        train_store, seed=values["seed"], shuffle_shards=shuffle_shards,
        outlier_factor=outlier_factor,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as out_dir:
        sae = train(TrainConfig(**values), store, out_dir, device=device, progress=False)
    held_out = ActivationStore(eval_store, seed=0, outlier_factor=outlier_factor)
    tokens = min(eval_tokens, held_out.n_tokens)
    return reconstruction_metrics(sae.cpu(), held_out, tokens, min(batch_size * 64, tokens))


def calibrate_l1(
    values: dict,
    measure: Callable[[dict], dict[str, float]],
    target_l0: float,
    tolerance: float = 0.1,
    slope: float = -2.4,
    max_trials: int = 5,
) -> tuple[float, float, list[dict]]:
    """(chosen L1, its held-out L0, every trial) for the run with TrainConfig `values`;
    `measure(values)` trains and returns held-out metrics. The chosen coefficient is the
    trial closest to the target (the first within `tolerance` ends the search)."""
    trials: list[dict] = []
    l1 = float(TrainConfig(**values).l1_coefficient)  # the configured start, or the default
    for trial in range(max_trials):
        metrics = measure({**values, "l1_coefficient": l1})
        l0 = float(metrics["l0"])
        trials.append({"trial": trial, "l1_coefficient": l1, **metrics})
        log.info("trial %d: l1 %.5g -> held-out L0 %.2f (target %g)", trial, l1, l0, target_l0)
        if abs(l0 / target_l0 - 1) <= tolerance:
            break
        step_slope = slope
        if len(trials) >= 2:
            (l1_a, l0_a), (l1_b, l0_b) = [(t["l1_coefficient"], t["l0"]) for t in trials[-2:]]
            if l0_a > 0 and l0_b > 0 and l1_a != l1_b and l0_a != l0_b:
                step_slope = math.log(l0_b / l0_a) / math.log(l1_b / l1_a)
            step_slope = min(step_slope, -0.3)  # L0 falls with L1; guard a flat secant
        # An L0 of 0 (everything dead) has no log: halve the coefficient instead.
        step = math.log(target_l0 / l0) / step_slope if l0 > 0 else -math.log(2)
        l1 = l1 * math.exp(max(min(step, math.log(4)), -math.log(4)))
    best = min(trials, key=lambda t: abs(t["l0"] / target_l0 - 1))
    return best["l1_coefficient"], best["l0"], trials
