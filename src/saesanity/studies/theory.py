"""The study's theory check: how much of the sphere random decoder directions can express.

A Soft-Frozen Decoder keeps each decoder direction d_j within cosine tau of its random
initial direction r_j: d_j lies in the spherical cap C(r_j, tau) = {u : cos(u, r_j) >= tau}.
A fixed unit direction u is expressible by one latent only if u lies in one of the m caps.
The study bounds the probability of that by the union bound and the cap-measure bound
sigma(C(r, tau)) <= exp(-n tau^2 / 2) (Ball, "An elementary introduction to modern convex
geometry", lemma 2.2):

    P(u in some cap) <= m * exp(-n * tau^2 / 2).

This module computes, per (n, m, tau):
- the bound;
- the exact probability for m independent uniform directions and a fixed target,
  1 - (1 - p)^m with p the measure of one cap (the regularised incomplete beta
  function), in log10 so that the study's scales (below 1e-300) stay numbers;
- a Monte Carlo estimate: one seeded draw of m random unit directions (one frozen
  decoder) and `samples` random unit targets; the fraction of targets within cosine tau
  of some direction, with a 95% Wilson interval. The union bound holds for every draw
  of the directions, so the estimate must not exceed the bound beyond its interval.

Where the bound promises fewer than `min_expected_hits` hits in `samples` targets (every
point at the study's scale), the probability cannot be measured with that budget: no
Monte Carlo is run and the `status` column says so, rather than printing 0 as if it
were a measurement.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import betainc, betaln, logsumexp

from saesanity.studies.runs import real_d_sae

log = logging.getLogger(__name__)

# Two-sided 95% normal quantile.
Z95 = 1.959963984540054
LOG10_E = math.log10(math.e)

STATUS_ESTIMATED = "estimated"
STATUS_NO_HITS = "no hits: upper limit only"
STATUS_NOT_ESTIMABLE = "not estimable: bound x samples < min_expected_hits"

CAP_BOUND_COLUMNS = (
    "source",
    "label",
    "n",
    "m",
    "tau",
    "bound",
    "log10_bound",
    "exact",
    "log10_exact",
    "samples",
    "hits",
    "estimate",
    "ci_low",
    "ci_high",
    "status",
    "within_bound",
)


def _check_point(n: int, m: int, tau: float) -> None:
    # The cap-measure bound needs tau > 0: a cap with tau <= 0 is at least a hemisphere.
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2, not {n!r}")
    if int(m) != m or m < 1:
        raise ValueError(f"m must be an integer >= 1, not {m!r}")
    if not 0 < tau < 1:
        raise ValueError(f"tau must be in (0, 1), not {tau!r}")


def cap_bound(n: int, m: int, tau: float) -> float:
    """The study's bound m * exp(-n tau^2 / 2) on P(a fixed direction lies in one of m
    caps of cosine tau in R^n). Above 1 it says nothing; it underflows to 0 at the
    study's scale (use `log10_cap_bound` there)."""
    _check_point(n, m, tau)
    return m * math.exp(-n * tau * tau / 2)


def log10_cap_bound(n: int, m: int, tau: float) -> float:
    """log10 of `cap_bound`, finite however small the bound is."""
    _check_point(n, m, tau)
    return math.log10(m) - n * tau * tau / 2 * LOG10_E


def _log_cap_measure_quadrature(n: int, tau: float, points: int = 20001) -> float:
    """ln P(cos(u, r) >= tau) by the trapezoid rule in log space, for n >= 3.

    cos(u, r) for a uniform u on S^(n-1) has density (1 - t^2)^((n - 3) / 2) / B(1/2,
    (n - 1) / 2) on [-1, 1]; above tau it decays like exp(-(t - tau) / L) with
    L = (1 - tau^2) / ((n - 3) tau), so [tau, tau + 60 L] holds all but e^-60 of the mass
    and the grid resolves L however large n is."""
    decay = (1 - tau * tau) / (max(n - 3, 1) * tau)
    upper = min(1.0, tau + 60 * decay)
    t = np.linspace(tau, upper, points)
    if n == 3:
        log_density = np.zeros(points)  # uniform: Archimedes' hat-box theorem
    else:
        with np.errstate(divide="ignore"):  # t = 1 has density 0 for n > 3: log 0 = -inf
            log_density = 0.5 * (n - 3) * np.log1p(-t * t)
    weights = np.full(points, (upper - tau) / (points - 1))
    weights[[0, -1]] /= 2
    return float(logsumexp(log_density, b=weights)) - float(betaln(0.5, 0.5 * (n - 1)))


def log_cap_measure(n: int, tau: float) -> float:
    """ln of the fraction of S^(n-1) within cosine tau of a fixed direction (0 < tau < 1).

    n = 2: the arc of half-angle arccos(tau), arccos(tau) / pi. n >= 3: cos^2 is
    Beta(1/2, (n - 1) / 2), so the cap is I_(1 - tau^2)((n - 1) / 2, 1/2) / 2; where that
    underflows float64, the same integral in log space."""
    _check_point(n, 1, tau)
    if n == 2:
        return math.log(math.acos(tau) / math.pi)
    p = 0.5 * float(betainc(0.5 * (n - 1), 0.5, 1 - tau * tau))
    # Far above the float64 floor betainc is accurate; near it, it loses digits.
    if p > 1e-250:
        return math.log(p)
    return _log_cap_measure_quadrature(n, tau)


def log10_exact_probability(n: int, m: int, tau: float) -> float:
    """log10 of 1 - (1 - p)^m: the probability that a fixed direction lies in at least one
    of the caps of m independent uniform directions (equivalently, the mean fraction of
    the sphere one draw of m directions covers)."""
    _check_point(n, m, tau)
    log_p = log_cap_measure(n, tau)
    if math.log(m) + log_p < -30:
        # m p < 1e-13: 1 - (1 - p)^m = m p (1 - O(m p)), and p may be below float64's range.
        return (math.log(m) + log_p) * LOG10_E
    p = math.exp(log_p)
    return math.log10(-math.expm1(m * math.log1p(-p)))


def wilson_interval(hits: int, samples: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default). Unlike the normal
    approximation it stays inside [0, 1] and is informative at 0 hits."""
    if samples < 1 or not 0 <= hits <= samples:
        raise ValueError(f"need 0 <= hits <= samples and samples >= 1, got {hits}/{samples}")
    z2 = z * z
    centre = (hits + z2 / 2) / (samples + z2)
    half = z / (samples + z2) * math.sqrt(hits * (samples - hits) / samples + z2 / 4)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class MonteCarlo:
    """Targets within cosine tau of some direction (`hits`) out of `samples`."""

    hits: int
    samples: int
    estimate: float
    ci_low: float
    ci_high: float


def _unit_rows(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    # Normalised Gaussian vectors are uniform on the sphere.
    x = rng.standard_normal((rows, n))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def monte_carlo_probability(
    n: int,
    m: int,
    tau: float,
    samples: int,
    seed: int,
    chunk_elements: int = 1 << 22,
) -> MonteCarlo:
    """Fraction of `samples` uniform unit targets within cosine tau of at least one of m
    uniform unit directions (one draw), with its 95% Wilson interval.

    The generator is seeded by (seed, n, m, tau), so a point's value does not depend on
    the other points of a table or their order. Targets come in blocks of about
    `chunk_elements` cosines (targets x m) to bound memory; the targets are drawn from
    the same stream whatever the block size, so the result does not depend on it."""
    _check_point(n, m, tau)
    if samples < 1:
        raise ValueError(f"samples must be >= 1, not {samples}")
    rng = np.random.default_rng([int(seed), int(n), int(m), round(tau * 1e9)])
    directions = _unit_rows(rng, m, n)
    block = max(1, int(chunk_elements) // max(m, n))
    hits, done = 0, 0
    while done < samples:
        size = min(block, samples - done)
        cosines = _unit_rows(rng, size, n) @ directions.T
        hits += int(np.count_nonzero(cosines.max(axis=1) >= tau))
        done += size
    low, high = wilson_interval(hits, samples)
    return MonteCarlo(hits, samples, hits / samples, low, high)


def cap_bound_table(
    points: list[dict],
    samples: int,
    seed: int,
    chunk_elements: int = 1 << 22,
    min_expected_hits: float = 1.0,
) -> pd.DataFrame:
    """One row per point ({n, m, tau} with optional `label` and `source`): the bound,
    the exact probability and, where the bound allows at least `min_expected_hits` hits
    in `samples` targets, the Monte Carlo estimate with its Wilson interval.

    Columns: CAP_BOUND_COLUMNS. `bound` and `exact` underflow to 0 at the study's scale;
    `log10_bound` and `log10_exact` do not. `status` says whether the probability was
    estimated, whether no target hit (only `ci_high` is a measurement then), or whether
    the budget was too small to try. `within_bound` is true where the estimate's interval
    reaches down to the bound or below (empty where nothing was estimated)."""
    rows = []
    for point in points:
        n, m, tau = int(point["n"]), int(point["m"]), float(point["tau"])
        log10_bound = log10_cap_bound(n, m, tau)
        log10_exact = log10_exact_probability(n, m, tau)
        row = {
            "source": point.get("source", ""),
            "label": point.get("label") or f"n={n}, m={m}, tau={tau:g}",
            "n": n,
            "m": m,
            "tau": tau,
            "bound": 10.0**log10_bound,
            "log10_bound": log10_bound,
            "exact": 10.0**log10_exact,
            "log10_exact": log10_exact,
            "samples": int(samples),
            "hits": pd.NA,
            "estimate": math.nan,
            "ci_low": math.nan,
            "ci_high": math.nan,
            "status": STATUS_NOT_ESTIMABLE,
            "within_bound": pd.NA,
        }
        # The probability is at most the bound, so this many samples expect fewer hits.
        if log10_bound + math.log10(samples) >= math.log10(min_expected_hits):
            result = monte_carlo_probability(n, m, tau, samples, seed, chunk_elements)
            row.update(
                hits=result.hits,
                ci_low=result.ci_low,
                ci_high=result.ci_high,
                within_bound=result.ci_low <= row["bound"],
            )
            if result.hits:
                row.update(estimate=result.estimate, status=STATUS_ESTIMATED)
            else:
                row.update(status=STATUS_NO_HITS)
        log.info(
            "n=%d m=%d tau=%g: log10 bound %.4g, log10 exact %.4g, %s (hits %s of %d)",
            n, m, tau, log10_bound, log10_exact, row["status"], row["hits"], samples,
        )  # fmt: skip
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(CAP_BOUND_COLUMNS))
    table["hits"] = table["hits"].astype("Int64")
    table["within_bound"] = table["within_bound"].astype("boolean")
    return table


def theory_settings(config: dict) -> dict:
    """`cap_bound_table`'s keyword arguments from the config's `theory` section."""
    theory = config.get("theory")
    if not theory:
        raise ValueError("the config has no `theory` section (see docs/config.md)")
    keys = ("samples", "seed", "chunk_elements", "min_expected_hits")
    return {key: theory[key] for key in keys if key in theory}


def _point(source: str, label: str, n: int, m: int, tau: float) -> dict:
    return {"source": source, "label": label, "n": int(n), "m": int(m), "tau": float(tau)}


def theory_points(config: dict) -> list[dict]:
    """The table's points: the study's scales (`theory.study_points`), this project's
    synthetic and real SAEs (width, dictionary size and soft-frozen tau from their
    sections), then `theory.extra_points`, small enough for Monte Carlo."""
    theory = config.get("theory") or {}
    default_tau = 0.8  # TrainConfig's soft_freeze_tau, the study's tau
    points = [
        _point("study", p.get("label") or "", p["n"], p["m"], p["tau"])
        for p in theory.get("study_points") or []
    ]
    synthetic = config["synthetic"]
    points.append(
        _point(
            "this project",
            "this project, synthetic",
            synthetic["n"],
            synthetic["d_sae"],
            synthetic.get("training", {}).get("soft_freeze_tau", default_tau),
        )
    )
    real = config["real"]
    points.append(
        _point(
            "this project",
            "this project, " + real["model"]["name"].split("/")[-1],
            real["model"]["d_model"],
            real_d_sae(config),
            real.get("training", {}).get("soft_freeze_tau", default_tau),
        )
    )
    points += [
        _point("extra", p.get("label") or "", p["n"], p["m"], p["tau"])
        for p in theory.get("extra_points") or []
    ]
    return points
