"""Case study 2's summary bar chart: drawn from table 1 (studies.real.table1), one panel
per headline metric, bars grouped by architecture, error bars only with several seeds,
disabled families left out, missing columns named."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO

from saesanity.plots.summary import SUMMARY_METRICS, figure_summary_bars, summary_metrics
from saesanity.studies.real import table1
from saesanity.studies.runs import table1_metrics

SERIES = (
    ("trained", "iso"),
    ("frozen_decoder", "cov"),
    ("soft_frozen_decoder", "iso"),
    ("frozen_encoder", "iso"),
)
ARCHITECTURES = ("topk", "batchtopk", "relu")
L0 = 40


def _metrics(seeds=(0, 1, 2), architectures=ARCHITECTURES) -> pd.DataFrame:
    """Per-run rows as results/real/l0_<L0>/metrics.csv has them."""
    rng = np.random.default_rng(0)
    rows = []
    for architecture in architectures:
        for variant, init in SERIES:
            for seed in seeds:
                gap = 0.0 if variant == "trained" else 0.05
                rows.append(
                    dict(
                        architecture=architecture,
                        variant=variant,
                        init=init,
                        target_l0=L0,
                        seed=seed,
                        explained_variance=0.8 - gap + rng.normal(0, 0.01),
                        sae_top_1_test_accuracy=0.7 - gap + rng.normal(0, 0.02),
                        ravel_disentanglement=0.6 + rng.normal(0, 0.02),
                        autointerp_score=0.75 - gap + rng.normal(0, 0.02),
                    )
                )
    return pd.DataFrame(rows)


def _table(seeds=(0, 1, 2), metrics=SUMMARY_METRICS) -> pd.DataFrame:
    return table1(_metrics(seeds), L0, list(metrics))


def _bars(ax) -> list:
    return [patch for patch in ax.patches if patch.get_gid() == "bar"]


def _errorbars(ax) -> list:
    return [c for c in ax.collections if c.get_gid() == "errorbar"]


def test_one_panel_per_metric_bars_grouped_by_architecture(tmp_path: Path) -> None:
    out = tmp_path / "summary.pdf"
    fig = figure_summary_bars(_table(), out, title="Model X, L0 = 40")
    assert out.read_bytes().startswith(b"%PDF") and out.stat().st_size > 1000
    assert [ax.get_title() for ax in fig.axes] == [
        "Explained variance",
        "Sparse probing (top-1 accuracy)",
        "RAVEL disentanglement",
        "AutoInterp score",
    ]
    for ax in fig.axes:
        # The percent rows are not bars: one bar per architecture and (variant, init).
        assert len(_bars(ax)) == len(ARCHITECTURES) * len(SERIES)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["batchtopk", "topk", "relu"]
        # Three seeds: error bars on every bar.
        assert sum(len(c.get_segments()) for c in _errorbars(ax)) == len(_bars(ax))
    # The bars are table 1's means.
    table = _table()
    ev = table[(table["architecture"] == "topk") & (table["variant"] == "trained")]
    heights = {round(p.get_height(), 9) for p in _bars(fig.axes[0])}
    assert round(float(ev["explained_variance_mean"].iloc[0]), 9) in heights
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [
        "Trained (iso)",
        "Frozen decoder (cov)",
        "Soft-frozen decoder (iso)",
        "Frozen encoder (iso)",
    ]
    assert "mean ± 1 std over 3 seeds" in fig._suptitle.get_text()


def test_one_seed_has_no_error_bars_and_says_so(tmp_path: Path) -> None:
    fig = figure_summary_bars(_table(seeds=(0,)), tmp_path / "one.pdf")
    assert "one seed" in fig._suptitle.get_text()
    assert all(not _errorbars(ax) for ax in fig.axes)


def test_missing_column_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ravel_disentanglement_std"):
        figure_summary_bars(
            _table().drop(columns="ravel_disentanglement_std"), tmp_path / "bad.pdf"
        )
    with pytest.raises(ValueError, match="seeds"):
        figure_summary_bars(_table().drop(columns="seeds"), tmp_path / "bad.pdf")
    with pytest.raises(ValueError, match="no metric"):
        figure_summary_bars(_table(), tmp_path / "bad.pdf", metrics=[])


def test_a_disabled_family_is_left_out(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    off = copy.deepcopy(config)
    off["autointerp"]["enabled"] = False
    off["ravel"]["enabled"] = False
    metrics = summary_metrics(table1_metrics(off))
    assert metrics == ["explained_variance", "sae_top_1_test_accuracy"]
    # Table 1 of that config has no AutoInterp or RAVEL columns: the chart draws the rest.
    table = _table(metrics=[c for c in table1_metrics(off) if c in _metrics().columns])
    assert "autointerp_score_mean" not in table.columns
    fig = figure_summary_bars(table, tmp_path / "two.pdf", metrics=metrics)
    assert len(fig.axes) == 2
    # The default config evaluates all four families at table 1's L0.
    assert summary_metrics(table1_metrics(config)) == list(SUMMARY_METRICS)


def test_missing_series_leave_gaps_not_errors(tmp_path: Path) -> None:
    table = _table()
    # relu without the frozen encoder; a metric not evaluated for topk (NaN).
    table = table[~((table["architecture"] == "relu") & (table["variant"] == "frozen_encoder"))]
    table.loc[table["architecture"] == "topk", "ravel_disentanglement_mean"] = np.nan
    fig = figure_summary_bars(table, tmp_path / "gaps.pdf")
    counts = [len(_bars(ax)) for ax in fig.axes]
    full = len(ARCHITECTURES) * len(SERIES)
    assert counts == [full - 1, full - 1, full - 1 - len(SERIES), full - 1]
