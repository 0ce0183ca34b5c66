"""Figures: each function writes a real PDF, fails clearly on missing input, and keeps
architecture colours fixed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from saesanity.plots import style
from saesanity.plots import synthetic as plots
from saesanity.studies.synthetic import SUMMARY_METRICS

THRESHOLD = 0.8
NUM_FEATURES = 400  # the study uses 3,200; fewer keeps the tests fast
ARCHITECTURES = ("batchtopk", "jumprelu", "topk", "matryoshka", "relu")
METRICS = SUMMARY_METRICS


def _probabilities(regime: str, rng: np.random.Generator) -> np.ndarray:
    if regime == "constant":
        return np.full(NUM_FEATURES, 0.00625)
    return 10 ** rng.uniform(-5.5, -1.2, size=NUM_FEATURES)


def _runs(
    regimes=("constant", "variable"),
    architectures=ARCHITECTURES,
    variants=("trained", "frozen_decoder"),
    inits=("iso",),
    seeds=(0, 1, 2),
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Metrics rows and per-feature recovery tables that look like the real ones."""
    rng = np.random.default_rng(0)
    rows, tables = [], []
    for regime in regimes:
        probability = _probabilities(regime, rng)
        for architecture in architectures:
            for variant in variants:
                for init in inits:
                    for seed in seeds:
                        # Frequent features are recovered better in the variable regime.
                        signal = 0.3 + 0.1 * np.log10(probability / 1e-5)
                        cosine = np.clip(signal + rng.normal(0, 0.15, NUM_FEATURES), 0.05, 1)
                        if variant != "trained":
                            cosine = np.clip(rng.normal(0.35, 0.05, NUM_FEATURES), 0, 1)
                        run = dict(
                            regime=regime,
                            architecture=architecture,
                            variant=variant,
                            init=init,
                            seed=seed,
                        )
                        tables.append(
                            pd.DataFrame(
                                {
                                    "feature": np.arange(NUM_FEATURES),
                                    "probability": probability,
                                    "max_cosine": cosine,
                                    "best_latent": rng.integers(0, 4000, NUM_FEATURES),
                                    **run,
                                }
                            )
                        )
                        recovered = cosine >= THRESHOLD
                        rows.append(
                            {
                                **run,
                                "explained_variance": rng.uniform(0.85, 0.99),
                                "mse": rng.uniform(0.01, 0.1),
                                "l0": rng.uniform(10, 40),
                                "dead_fraction": rng.uniform(0, 0.2),
                                "recovered_count": int(recovered.sum()),
                                "recovered_fraction": float(recovered.mean()),
                                "mean_max_cosine": float(cosine.mean()),
                                "median_max_cosine": float(np.median(cosine)),
                                "recovery_threshold": THRESHOLD,
                                "samples_seen": 2_000_000,
                                "stop_reason": "plateau",
                                "cfg_lr": 3e-4,
                            }
                        )
    return pd.DataFrame(rows), tables


def _summary(metrics: pd.DataFrame) -> pd.DataFrame:
    group = ["regime", "architecture", "variant", "init"]
    aggregated = metrics.groupby(group)[METRICS].agg(["mean", "std"])
    aggregated.columns = [f"{metric}_{stat}" for metric, stat in aggregated.columns]
    aggregated["seeds"] = metrics.groupby(group)["seed"].nunique()
    return aggregated.reset_index()


def _curves(metrics: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    samples = np.arange(1, 41) * 50_000
    frames = []
    for run in metrics[plots.RUN_COLUMNS].to_dict("records"):
        mse = 0.05 + np.exp(-samples / 300_000) + rng.normal(0, 0.005, samples.size)
        frames.append(
            pd.DataFrame(
                {
                    **run,
                    "step": samples // 1000,
                    "samples": samples,
                    "loss": mse,
                    "mse": mse,
                    "explained_variance": 1 - mse / 1.1,
                    "l0": 32 + rng.normal(0, 1, samples.size),
                    "dead_fraction": 0.0,
                    "lr": 3e-4,
                    "auxk": np.nan,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _assert_pdf(path: Path) -> None:
    assert path.exists()
    data = path.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(data) > 5_000
    # atomic_write leaves no temporary file behind
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture(autouse=True)
def fast_fonts(monkeypatch):
    # Type 42 font embedding (the default in plots) subsets fonts with fontTools, about a
    # second per figure; Type 3 keeps the suite fast and exercises the same drawing code.
    monkeypatch.setitem(style.STYLE, "pdf.fonttype", 3)


@pytest.fixture(scope="module")
def study() -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    return _runs()


def test_architecture_colours_are_fixed_and_distinct():
    colours = [style.ARCHITECTURE_COLOURS[name] for name in ARCHITECTURES]
    assert len(set(colours)) == len(ARCHITECTURES)
    for name in ARCHITECTURES:
        assert style.architecture_colour(name) == style.ARCHITECTURE_COLOURS[name]
    # Unknown names get a colour too, the same one every time.
    assert style.architecture_colour("gated") == style.architecture_colour("gated")


def test_run_label():
    assert plots.run_label("batchtopk", "trained", "iso") == "batchtopk"
    assert plots.run_label("batchtopk", "frozen_decoder", "cov") == (
        "batchtopk frozen_decoder (cov)"
    )


def test_format_mean_std():
    assert style.format_mean_std(0.98765, 0.001234) == "0.988 ± 0.00123"
    assert style.format_mean_std(0.35, float("nan")) == "0.350"
    assert style.format_mean_std(217.0, 18.0) == "217 ± 18.0"
    assert style.format_mean_std(float("nan"), float("nan")) == "–"
    assert style.format_mean_std(12.6, 1.4, count=True) == "13 ± 1"
    assert style.format_mean_std(2_000_000.0, 0.0, count=True) == "2,000,000 ± 0"


def test_figure_constant(study, tmp_path):
    metrics, recoveries = study
    out = tmp_path / "fig" / "constant.pdf"
    plots.figure_constant(metrics, recoveries, THRESHOLD, out, chance_level=0.35)
    _assert_pdf(out)


def test_figure_variable(study, tmp_path):
    metrics, recoveries = study
    out = tmp_path / "variable.pdf"
    plots.figure_variable(metrics, recoveries, THRESHOLD, out, bins=8, chance_level=0.35)
    _assert_pdf(out)


def test_figure_architectures(study, tmp_path):
    metrics, _ = study
    out = tmp_path / "architectures.pdf"
    plots.figure_architectures(metrics, THRESHOLD, out, chance_level=0.35)
    _assert_pdf(out)


def test_training_length_note_says_when_runs_stopped_at_their_cap(study, tmp_path, monkeypatch):
    from saesanity.studies.synthetic import training_length_note

    metrics = study[0].assign(cfg_plateau_rel_tol=0.01, cfg_plateau_window_samples=512_000)
    unmeasured = training_length_note(metrics)
    assert unmeasured.startswith(f"Training length: all {len(metrics)} runs met the plateau rule")
    assert "loss down < 1% per 0.512M samples" in unmeasured
    assert "whether EV and recovery stopped changing is not measured" in unmeasured
    capped = metrics.copy()
    capped.loc[capped.index[:3], "stop_reason"] = "max_samples"
    note = training_length_note(capped)
    assert note.startswith(f"Training length: NOT SETTLED. 3 of {len(metrics)} runs")
    # The length study's verdict per curve: one still moving makes the figure say so.
    keys = ["regime", "architecture", "variant", "init"]
    curves = metrics[keys].drop_duplicates().reset_index(drop=True)
    settled = curves.assign(settled_samples=1_024_000.0, tolerance=0.01, relative_tolerance=0.1)
    calm = training_length_note(metrics, settled)
    assert "NOT SETTLED" not in calm
    assert f"EV and recovery settled for all {len(curves)} followed" in calm
    settled.loc[0, "settled_samples"] = float("nan")
    moving = training_length_note(metrics, settled)
    first = curves.iloc[0]
    assert moving.startswith("Training length: NOT SETTLED. all")
    assert f"still moving at the last point for 1 of {len(curves)}" in moving
    assert f"{first.regime} {first.architecture}" in moving
    # A last point that fewer seeds reached than the first is named.
    thin = settled.assign(seeds_first=3, seeds_last=3)
    thin.loc[1, "seeds_last"] = 1
    second = curves.iloc[1]
    assert f"last point from fewer seeds: {second.regime} {second.architecture} (1 of 3)" in (
        training_length_note(metrics, thin)
    )
    # A curve the study does not follow is counted, not called settled.
    assert "1 not followed" in training_length_note(metrics, settled.iloc[1:])
    with pytest.raises(ValueError, match="lacks \\['cfg_plateau_rel_tol'"):
        training_length_note(study[0].drop(columns=["cfg_plateau_rel_tol"], errors="ignore"))
    # The note is drawn on the figure.
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, tight=False: figures.append(fig))
    plots.figure_architectures(capped, THRESHOLD, tmp_path / "a.pdf", note=note)
    assert note in [text.get_text() for text in figures[0].texts]


def test_figure_summary_table(study, tmp_path):
    metrics, _ = study
    out = tmp_path / "summary.pdf"
    # One regime is enough to exercise the code; table cells are slow to draw.
    plots.figure_summary_table(_summary(metrics[metrics["regime"] == "constant"]), out)
    _assert_pdf(out)


def test_figure_curves(study, tmp_path):
    metrics, _ = study
    out = tmp_path / "curves.pdf"
    trained = metrics[(metrics["variant"] == "trained") & (metrics["seed"] < 2)]
    plots.figure_curves(_curves(trained), out)
    _assert_pdf(out)


def test_partial_inputs(tmp_path):
    """One architecture, one seed (no std, no band), one regime, and a second init."""
    metrics, recoveries = _runs(
        regimes=("variable",), architectures=("topk",), variants=("trained",), seeds=(0,)
    )
    plots.figure_variable(metrics, recoveries, THRESHOLD, tmp_path / "v.pdf")
    plots.figure_architectures(metrics, THRESHOLD, tmp_path / "a.pdf")
    for name in ("v", "a"):
        _assert_pdf(tmp_path / f"{name}.pdf")

    metrics, recoveries = _runs(
        regimes=("constant",), architectures=("relu",), inits=("iso", "cov"), seeds=(0, 1)
    )
    plots.figure_constant(metrics, recoveries[0], THRESHOLD, tmp_path / "k.pdf")
    _assert_pdf(tmp_path / "k.pdf")


def test_missing_input_raises(study, tmp_path):
    metrics, recoveries = study
    constant_only = metrics[metrics["regime"] == "constant"]
    with pytest.raises(ValueError, match="figure_variable: no runs with regime == 'variable'"):
        plots.figure_variable(constant_only, recoveries, THRESHOLD, tmp_path / "v.pdf")
    with pytest.raises(ValueError, match="figure_constant: no recovery tables"):
        plots.figure_constant(metrics, [], THRESHOLD, tmp_path / "c.pdf")
    baselines = metrics[metrics["variant"] != "trained"]
    with pytest.raises(ValueError, match="variant == 'trained'"):
        plots.figure_constant(baselines, recoveries, THRESHOLD, tmp_path / "c.pdf")
    with pytest.raises(ValueError, match="figure_architectures: no runs"):
        plots.figure_architectures(metrics.iloc[:0], THRESHOLD, tmp_path / "a.pdf")
    with pytest.raises(ValueError, match="figure_summary_table: summary has no rows"):
        plots.figure_summary_table(_summary(metrics).iloc[:0], tmp_path / "s.pdf")
    with pytest.raises(ValueError, match="figure_curves: curves lacks columns \\['mse'\\]"):
        plots.figure_curves(_curves(metrics).drop(columns="mse"), tmp_path / "k.pdf")
    with pytest.raises(ValueError, match="figure_curves: curves has no rows"):
        plots.figure_curves(_curves(metrics).iloc[:0], tmp_path / "k.pdf")
    # Nothing was written by the failed calls.
    assert not list(tmp_path.iterdir())
