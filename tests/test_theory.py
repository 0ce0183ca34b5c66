"""The theory check: the study's cap bound, the exact probability, the Monte Carlo
estimate against exactly known cases, the table (no fake zeros) and its figure."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from scipy.special import betainc

from saesanity.plots.theory import figure_cap_bound
from saesanity.studies import theory
from saesanity.studies.runs import ConfigError, validate_config

CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
SCHEMA = REPO / "schemas" / "config.schema.yaml"
SAMPLES = 1 << 16


def test_bound_matches_hand_values():
    # 3200 exp(-100 * 0.64 / 2) = 3200 e^-32 (the study's synthetic scale).
    assert theory.cap_bound(100, 3200, 0.8) == pytest.approx(3200 * 1.2664165549e-14, rel=1e-9)
    assert theory.cap_bound(2, 1, 0.5) == pytest.approx(math.exp(-0.25))
    assert theory.log10_cap_bound(100, 3200, 0.8) == pytest.approx(-10.392273, abs=1e-6)
    # Gemma-2-2B, 32x: far below float64's range, still a number in log10.
    assert theory.log10_cap_bound(2304, 73728, 0.8) == pytest.approx(
        math.log10(73728) - 2304 * 0.32 / math.log(10)
    )


@pytest.mark.parametrize("n, m, tau", [(1, 1, 0.5), (10, 0, 0.5), (10, 1, 0.0), (10, 1, 1.0)])
def test_points_outside_the_bounds_domain_are_rejected(n, m, tau):
    with pytest.raises(ValueError):
        theory.cap_bound(n, m, tau)


def test_cap_measure_exact_cases():
    tau = 0.8
    # Circle: an arc of half-angle arccos(tau). Sphere S^2: Archimedes, (1 - tau) / 2.
    assert math.exp(theory.log_cap_measure(2, tau)) == pytest.approx(math.acos(tau) / math.pi)
    assert math.exp(theory.log_cap_measure(3, tau)) == pytest.approx((1 - tau) / 2)
    assert math.exp(theory._log_cap_measure_quadrature(3, tau)) == pytest.approx(0.1, rel=1e-9)
    # The log-space integral (used below float64's range) agrees with betainc where both work.
    for n, t in [(50, 0.3), (400, 0.8), (1000, 0.5)]:
        direct = math.log(0.5 * betainc(0.5 * (n - 1), 0.5, 1 - t * t))
        assert theory._log_cap_measure_quadrature(n, t) == pytest.approx(direct, rel=1e-7)


def test_exact_probability_is_below_the_bound_and_finite_at_the_study_scale():
    # m = 1, n = 2: 1 - (1 - p) = p.
    assert 10 ** theory.log10_exact_probability(2, 1, 0.8) == pytest.approx(
        math.acos(0.8) / math.pi
    )
    # Independent caps: 1 - (1 - p)^m.
    p = 0.5 * betainc(4.5, 0.5, 1 - 0.64)
    assert 10 ** theory.log10_exact_probability(10, 10, 0.8) == pytest.approx(1 - (1 - p) ** 10)
    for n, m in [(100, 3200), (576, 2304), (2304, 73728), (4096, 131072)]:
        exact = theory.log10_exact_probability(n, m, 0.8)
        assert math.isfinite(exact)
        assert exact < theory.log10_cap_bound(n, m, 0.8)
    # (1 - tau^2)^(n/2) is the exact decay rate, well below exp(-n tau^2 / 2).
    assert theory.log10_exact_probability(2304, 73728, 0.8) == pytest.approx(-508.0, abs=0.5)


def test_wilson_interval_hand_values():
    z2 = theory.Z95**2
    low, high = theory.wilson_interval(0, 100)
    assert low == 0.0 and high == pytest.approx(z2 / (100 + z2))
    low, high = theory.wilson_interval(50, 100)
    assert (low + high) / 2 == pytest.approx(0.5)
    assert high - low == pytest.approx(2 * theory.Z95 / (100 + z2) * math.sqrt(25 + z2 / 4))
    with pytest.raises(ValueError):
        theory.wilson_interval(5, 3)


@pytest.mark.parametrize("n, tau", [(2, 0.8), (2, 0.3), (3, 0.5)])
def test_monte_carlo_interval_holds_the_exact_single_cap(n, tau):
    exact = math.acos(tau) / math.pi if n == 2 else (1 - tau) / 2
    result = theory.monte_carlo_probability(n, 1, tau, SAMPLES, seed=0)
    assert result.samples == SAMPLES and result.estimate == result.hits / SAMPLES
    assert result.ci_low <= exact <= result.ci_high
    # The interval is a real measurement: a few tenths of a percent wide here.
    assert result.ci_high - result.ci_low < 0.01


def test_monte_carlo_is_deterministic_for_a_seed_and_block_size_free():
    first = theory.monte_carlo_probability(10, 10, 0.8, SAMPLES, seed=3)
    again = theory.monte_carlo_probability(10, 10, 0.8, SAMPLES, seed=3)
    small_blocks = theory.monte_carlo_probability(10, 10, 0.8, SAMPLES, seed=3, chunk_elements=999)
    other = theory.monte_carlo_probability(10, 10, 0.8, SAMPLES, seed=4)
    assert first == again == small_blocks
    assert other.hits != first.hits


def test_estimate_is_at_or_below_the_bound_where_estimable():
    n, m, tau = 20, 10, 0.6
    result = theory.monte_carlo_probability(n, m, tau, SAMPLES, seed=0)
    assert result.hits > 100  # estimable: the check below is not 0 <= bound
    assert result.ci_low <= theory.cap_bound(n, m, tau)
    # The estimate also agrees with the exact mean over draws of the directions.
    exact = 10 ** theory.log10_exact_probability(n, m, tau)
    assert abs(result.estimate - exact) < 3 * (result.ci_high - result.ci_low)


def test_table_marks_unmeasurable_points_instead_of_printing_zero():
    points = [
        {"source": "study", "label": "study, synthetic", "n": 100, "m": 3200, "tau": 0.8},
        {"n": 10, "m": 10, "tau": 0.8},
        # The bound allows ~1.7 hits in 64 targets, the exact probability ~0.19: none hits.
        {"n": 50, "m": 1, "tau": 0.38},
    ]
    table = theory.cap_bound_table(points, samples=64, seed=0)
    assert list(table.columns) == list(theory.CAP_BOUND_COLUMNS)
    tiny, measured, no_hits = (table.iloc[i] for i in range(3))
    assert tiny["status"] == theory.STATUS_NOT_ESTIMABLE
    assert pd.isna(tiny["hits"]) and math.isnan(tiny["estimate"]) and pd.isna(tiny["within_bound"])
    assert tiny["label"] == "study, synthetic"
    assert measured["label"] == "n=10, m=10, tau=0.8"
    assert measured["status"] in (theory.STATUS_ESTIMATED, theory.STATUS_NO_HITS)
    assert no_hits["status"] == theory.STATUS_NO_HITS and no_hits["hits"] == 0
    assert math.isnan(no_hits["estimate"]) and no_hits["ci_high"] > 0
    assert bool(no_hits["within_bound"])
    # A larger budget measures the middle point, below its bound.
    row = theory.cap_bound_table(points[1:2], samples=SAMPLES, seed=0).iloc[0]
    assert row["status"] == theory.STATUS_ESTIMATED and bool(row["within_bound"])
    assert row["estimate"] <= row["bound"]


def test_points_come_from_the_config():
    points = theory.theory_points(CONFIG)
    project = [p for p in points if p["source"] == "this project"]
    assert [(p["n"], p["m"]) for p in project] == [
        (CONFIG["synthetic"]["n"], CONFIG["synthetic"]["d_sae"]),
        (576, CONFIG["real"]["expansion"] * 576),
    ]
    assert all(p["tau"] == CONFIG["real"]["training"]["soft_freeze_tau"] for p in project)
    assert {(p["n"], p["m"], p["tau"]) for p in points if p["source"] == "study"} >= {
        (100, 3200, 0.8),
        (2304, 73728, 0.8),
    }
    assert len([p for p in points if p["source"] == "extra"]) == len(
        CONFIG["theory"]["extra_points"]
    )


def test_default_config_checks_the_bound_at_several_estimable_points():
    settings = {k: v for k, v in CONFIG["theory"].items() if not k.endswith("points")}
    extra = [{**p, "source": "extra"} for p in CONFIG["theory"]["extra_points"]]
    table = theory.cap_bound_table(extra, **{**settings, "samples": SAMPLES})
    assert (table["status"] == theory.STATUS_ESTIMATED).sum() >= 3
    assert table["within_bound"].all()
    assert (table["bound"] < 1).all()  # the bound says something at every extra point


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda t: t["extra_points"].append({"n": 10, "m": 5, "tau": 1.0}), "tau"),
        (lambda t: t["extra_points"].append({"n": 10, "m": 5}), "tau"),
        (lambda t: t.update(samples=0), "samples"),
        (lambda t: t.update(bogus=1), "bogus"),
    ],
)
def test_schema_rejects_bad_theory_settings(edit, named):
    config = copy.deepcopy(CONFIG)
    edit(config["theory"])
    with pytest.raises(ConfigError, match=named):
        validate_config(config, SCHEMA)


def test_settings_come_from_the_config_and_a_missing_section_is_named():
    settings = theory.theory_settings(CONFIG)
    assert settings["samples"] == CONFIG["theory"]["samples"]
    assert set(settings) <= {"samples", "seed", "chunk_elements", "min_expected_hits"}
    with pytest.raises(ValueError, match="theory"):
        theory.theory_settings({k: v for k, v in CONFIG.items() if k != "theory"})


def test_theory_section_is_optional_in_the_schema():
    config = copy.deepcopy(CONFIG)
    del config["theory"]
    validate_config(config, SCHEMA)


def test_figure_is_written_and_names_missing_columns(tmp_path: Path):
    points = [
        {"source": "study", "label": "study, Gemma-2-2B", "n": 2304, "m": 73728, "tau": 0.8},
        {"n": 2, "m": 1, "tau": 0.8},
        {"n": 50, "m": 1, "tau": 0.38},
    ]
    table = theory.cap_bound_table(points, samples=64, seed=0)
    out = tmp_path / "cap.pdf"
    fig = figure_cap_bound(table, out)
    assert out.read_bytes().startswith(b"%PDF") and out.stat().st_size > 1000
    measured, beyond = fig.axes[:2]
    assert measured.get_yscale() == "log"
    assert len(measured.get_xticks()) == 2 and len(beyond.get_xticks()) == 1
    # The no-hits point is drawn as an upper limit, not as a zero.
    assert [line.get_gid() for line in measured.get_lines()].count("upper_limit") == 1
    assert np.isclose(beyond.get_lines()[0].get_ydata()[0], table["log10_bound"].iloc[0])
    with pytest.raises(ValueError, match="log10_exact"):
        figure_cap_bound(table.drop(columns=["log10_exact"]), tmp_path / "bad.pdf")
