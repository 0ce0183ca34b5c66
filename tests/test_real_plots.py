"""Case-study-2 figures: each writes a non-empty PDF, draws one series per (variant, init)
and panel, copes with a single L0 or missing variants, and names missing columns."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from saesanity.plots import real as real_plots

ARCHITECTURES = ("relu", "topk", "batchtopk", "jumprelu")
SERIES = (
    ("trained", "iso"),
    ("frozen_decoder", "iso"),
    ("frozen_decoder", "cov"),
    ("soft_frozen_decoder", "iso"),
    ("frozen_encoder", "iso"),
)
L0S = (20, 40, 80)


def _metrics(architectures=ARCHITECTURES, series=SERIES, l0s=L0S, seeds=(0, 1)) -> pd.DataFrame:
    """One row per run, with values in the ranges the real runs produce."""
    rng = np.random.default_rng(0)
    rows = []
    for architecture in architectures:
        for variant, init in series:
            for l0 in l0s:
                for seed in seeds:
                    gap = 0.0 if variant == "trained" else 0.08
                    ev = 0.6 + 0.1 * np.log2(l0 / 20) - gap + rng.normal(0, 0.01)
                    ce = 3.2 + 1.5 * (1 - ev) + rng.normal(0, 0.02)
                    rows.append(
                        dict(
                            architecture=architecture,
                            variant=variant,
                            init=init,
                            target_l0=l0,
                            seed=seed,
                            explained_variance=ev,
                            l0=l0 * rng.uniform(0.9, 1.1),
                            dead_fraction=rng.uniform(0, 0.2),
                            ce_loss=ce,
                            ce_loss_clean=3.2,
                            ce_loss_zero_ablation=7.9,
                            ce_loss_score=(7.9 - ce) / (7.9 - 3.2),
                            kl_divergence=ce - 3.2,
                            kl_div_score=rng.uniform(0.5, 1),
                            cfg_lr=2e-4,
                        )
                    )
    return pd.DataFrame(rows)


def _series_lines(ax) -> list:
    return [line for line in ax.get_lines() if line.get_gid() == "series"]


def _reference_lines(ax) -> list:
    return [line for line in ax.get_lines() if line.get_gid() == "reference"]


def _assert_pdf(path: Path) -> None:
    assert path.exists()
    assert path.stat().st_size > 1000
    assert path.read_bytes().startswith(b"%PDF")


def test_metric_vs_l0_draws_one_line_per_series_and_panel(tmp_path: Path) -> None:
    out = tmp_path / "ev.pdf"
    fig = real_plots.figure_metric_vs_l0(
        _metrics(), "explained_variance", out, reference=1.0, reference_label="perfect"
    )
    _assert_pdf(out)
    assert len(fig.axes) == len(ARCHITECTURES)
    # Canonical architecture order: the study's four first.
    assert [ax.get_title() for ax in fig.axes] == ["batchtopk", "jumprelu", "topk", "relu"]
    for ax in fig.axes:
        lines = _series_lines(ax)
        assert len(lines) == len(SERIES)
        assert all(len(line.get_xdata()) == len(L0S) for line in lines)
        assert len(_reference_lines(ax)) == 1
        # Two seeds: one error-bar collection per series.
        assert len(ax.collections) == len(SERIES)
    labels = {line.get_label() for line in _series_lines(fig.axes[0])}
    assert "Frozen decoder (cov)" in labels and "Trained (iso)" in labels
    legend_labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert "perfect" in legend_labels
    # Shared y axis across architectures.
    assert len({ax.get_ylim() for ax in fig.axes}) == 1


def test_metric_vs_l0_consistent_variant_colours(tmp_path: Path) -> None:
    fig = real_plots.figure_metric_vs_l0(_metrics(), "ce_loss", tmp_path / "ce.pdf")
    colours = {}
    for ax in fig.axes:
        for line in _series_lines(ax):
            colours.setdefault(line.get_label(), set()).add(line.get_color())
    assert all(len(values) == 1 for values in colours.values())
    assert colours["Trained (iso)"] == {real_plots.VARIANT_COLOURS["trained"]}


def test_metric_vs_l0_single_l0_single_seed_and_missing_variants(tmp_path: Path) -> None:
    metrics = _metrics(l0s=(40,), seeds=(0,))
    # topk lacks the frozen encoder; relu has only the trained SAE.
    metrics = metrics[
        ~((metrics["architecture"] == "topk") & (metrics["variant"] == "frozen_encoder"))
        & ~((metrics["architecture"] == "relu") & (metrics["variant"] != "trained"))
    ]
    out = tmp_path / "single.pdf"
    fig = real_plots.figure_metric_vs_l0(metrics, "explained_variance", out)
    _assert_pdf(out)
    counts = {ax.get_title(): len(_series_lines(ax)) for ax in fig.axes}
    assert counts == {"batchtopk": 5, "jumprelu": 5, "topk": 4, "relu": 1}
    for ax in fig.axes:
        assert all(len(line.get_xdata()) == 1 for line in _series_lines(ax))
        assert all(line.get_marker() not in (None, "None", "") for line in _series_lines(ax))
        assert not ax.collections  # one seed: no error bars
        assert [tick.get_text() for tick in ax.get_xticklabels()] == ["40"]


def test_metric_vs_l0_measured_l0_on_x(tmp_path: Path) -> None:
    fig = real_plots.figure_metric_vs_l0(
        _metrics(), "kl_divergence", tmp_path / "kl.pdf", x="l0", ylabel="KL"
    )
    assert fig.axes[0].get_ylabel() == "KL"
    assert fig.axes[0].get_xscale() == "log"


def test_metric_vs_l0_missing_column_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sparse_probing_top1"):
        real_plots.figure_metric_vs_l0(_metrics(), "sparse_probing_top1", tmp_path / "x.pdf")
    with pytest.raises(ValueError, match="target_l0"):
        real_plots.figure_metric_vs_l0(
            _metrics().drop(columns="target_l0"), "explained_variance", tmp_path / "x.pdf"
        )
    assert not (tmp_path / "x.pdf").exists()


def test_reconstruction_grid(tmp_path: Path) -> None:
    out = tmp_path / "reconstruction.pdf"
    fig = real_plots.figure_reconstruction(_metrics(), out)
    _assert_pdf(out)
    assert len(fig.axes) == 3 * len(ARCHITECTURES)
    for ax in fig.axes:
        assert len(_series_lines(ax)) == len(SERIES)
    grid = np.array(fig.axes).reshape(3, len(ARCHITECTURES))
    # The clean-model CE is drawn in the CE row only.
    assert [len(_reference_lines(ax)) for ax in grid[1]] == [1] * len(ARCHITECTURES)
    assert all(not _reference_lines(ax) for ax in [*grid[0], *grid[2]])
    assert _reference_lines(grid[1][0])[0].get_ydata()[0] == pytest.approx(3.2)
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert "zero-ablation CE: 7.9" in legend and "clean model CE (3.2)" in legend
    assert [ax.get_ylabel() for ax in grid[:, 0]] == [
        "explained variance",
        "CE loss (nats/token)",
        "KL divergence (nats/token)",
    ]


def test_reconstruction_figure_carries_its_note(tmp_path: Path) -> None:
    note = "Runs trained 3,200 steps; the study measures L0 40 only."
    fig = real_plots.figure_reconstruction(_metrics(), tmp_path / "r.pdf", note=note)
    _assert_pdf(tmp_path / "r.pdf")
    assert note in [text.get_text() for text in fig.texts]


def test_reconstruction_single_l0_without_reference_columns(tmp_path: Path) -> None:
    metrics = _metrics(architectures=("topk",), l0s=(40,), seeds=(0,)).drop(
        columns=["ce_loss_clean", "ce_loss_zero_ablation"]
    )
    fig = real_plots.figure_reconstruction(metrics, tmp_path / "r.pdf")
    _assert_pdf(tmp_path / "r.pdf")
    assert len(fig.axes) == 3
    assert all(not _reference_lines(ax) for ax in fig.axes)


def test_reconstruction_missing_column_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kl_divergence"):
        real_plots.figure_reconstruction(
            _metrics().drop(columns="kl_divergence"), tmp_path / "r.pdf"
        )


def _drift(l0s=L0S, fractions=(0.05, 0.1), seeds=(0, 1), latents=64) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frames = []
    for architecture in ARCHITECTURES:
        for variant in ("trained", "frozen_decoder"):
            for l0 in l0s:
                for seed in seeds:
                    for fraction in fractions:
                        cosine = 1 - rng.exponential(0.05 + fraction, latents)
                        frames.append(
                            pd.DataFrame(
                                dict(
                                    architecture=architecture,
                                    variant=variant,
                                    init="iso",
                                    target_l0=l0,
                                    seed=seed,
                                    samples_seen=int(fraction * 1e6),
                                    fraction_of_training=fraction,
                                    latent=np.arange(latents),
                                    cosine_to_init=np.clip(cosine, -1, 1),
                                )
                            )
                        )
    return pd.concat(frames, ignore_index=True)


def test_drift_histograms(tmp_path: Path) -> None:
    out = tmp_path / "drift.pdf"
    fig = real_plots.figure_drift(_drift(), out)
    _assert_pdf(out)
    assert len(fig.axes) == len(ARCHITECTURES)
    for ax in fig.axes:
        assert len(ax.patches) == 2  # one step histogram per snapshot
        assert "L0 = 40" in ax.get_title() and "2 seeds" in ax.get_title()
        assert any(line.get_xdata()[0] == pytest.approx(0.8) for line in ax.get_lines())
        assert ax.get_xlim()[1] == pytest.approx(1.0)
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert legend[:2] == ["5% of training", "10% of training"]
    assert any("τ = 0.8" in text for text in legend)


def test_drift_single_snapshot_and_errors(tmp_path: Path) -> None:
    fig = real_plots.figure_drift(_drift(l0s=(80,), fractions=(0.05,), seeds=(0,)), tmp_path / "d")
    assert all(len(ax.patches) == 1 for ax in fig.axes)
    with pytest.raises(ValueError, match="cosine_to_init"):
        real_plots.figure_drift(_drift().drop(columns="cosine_to_init"), tmp_path / "d.pdf")
    untrained = _drift()
    untrained = untrained[untrained["variant"] != "trained"]
    with pytest.raises(ValueError, match="trained"):
        real_plots.figure_drift(untrained, tmp_path / "d.pdf")


def _table() -> pd.DataFrame:
    metrics = ["explained_variance", "l0", "ce_loss", "sparse_probing_top1"]
    rows = []
    for architecture in ("topk", "batchtopk"):
        for variant, init in SERIES:
            row = dict(architecture=architecture, variant=variant, init=init, seeds=3)
            for i, metric in enumerate(metrics):
                row[f"{metric}_mean"] = 0.7 + 0.01 * i
                row[f"{metric}_std"] = 0.012
            rows.append(row)
        row = dict(
            architecture=architecture, variant="best frozen - trained (%)", init="", seeds=math.nan
        )
        for metric in metrics:
            row[f"{metric}_mean"] = 1.234 if metric != "ce_loss" else -3.5
            row[f"{metric}_std"] = math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _cell_texts(fig) -> list[list[str]]:
    cells = fig.axes[0].tables[0].get_celld()
    n_rows = 1 + max(r for r, _ in cells)
    n_cols = 1 + max(c for _, c in cells)
    return [[cells[r, c].get_text().get_text() for c in range(n_cols)] for r in range(n_rows)]


def test_table1(tmp_path: Path) -> None:
    out = tmp_path / "table1.pdf"
    fig = real_plots.figure_table1(_table(), out, title="Table 1: test model, layer 6")
    _assert_pdf(out)
    texts = _cell_texts(fig)
    assert texts[0] == [
        "architecture",
        "variant",
        "init",
        "seeds",
        "EV",
        "L0",
        "CE loss",
        "sparse_probing_top1",
    ]
    body = texts[1:]
    assert len(body) == 2 * (len(SERIES) + 1)
    assert body[0][:4] == ["batchtopk", "Trained", "iso", "3"]
    assert "±" in body[0][4]
    # The percent row closes each architecture's block.
    percent = body[len(SERIES)]
    assert percent[1].startswith("best frozen")
    assert percent[3] == ""
    assert percent[4:] == ["+1.2%", "+1.2%", "-3.5%", "+1.2%"]
    assert body[len(SERIES) + 1][0] == "topk"
    assert fig._suptitle.get_text() == "Table 1: test model, layer 6"


def test_table1_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ce_loss_std"):
        real_plots.figure_table1(_table().drop(columns="ce_loss_std"), tmp_path / "t.pdf", "t")
    with pytest.raises(ValueError, match="seeds"):
        real_plots.figure_table1(_table().drop(columns="seeds"), tmp_path / "t.pdf", "t")


def test_the_sparse_probing_figure_is_the_same_bytes_when_drawn_again(tmp_path):
    metrics = _metrics()
    rng = np.random.default_rng(1)
    for k in (1, 5):
        metrics[f"sae_top_{k}_test_accuracy"] = rng.uniform(0.6, 0.9, len(metrics))
    baselines = pd.DataFrame(
        [{"family": "all", "llm_top_1_test_accuracy": 0.67, "llm_top_5_test_accuracy": 0.85}]
    )
    paths = [tmp_path / "first.pdf", tmp_path / "second.pdf"]
    for path in paths:
        real_plots.figure_sparse_probing(metrics, baselines, [1, 5], path)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert b"/CreationDate" not in paths[0].read_bytes()  # the clock would change the bytes
