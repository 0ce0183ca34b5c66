"""The study's summary bar chart (case study 2): the headline metrics of the trained SAE
and each random baseline at table 1's L0.

One panel per metric (explained variance, sparse-probing top-1 accuracy, RAVEL
disentanglement, AutoInterp score, each where the config evaluates it); in each panel the
bars are grouped by architecture, one bar per (variant, init) in the colours of the other
case-study-2 figures (plots.real: colour is the variant; "cov" bars are hatched). Error
bars are ±1 std over seeds where a row has several; the title says "one seed" where none
has.

The input is table 1 itself (results/real/table1.csv: `<metric>_mean`, `<metric>_std`,
`seeds` per architecture, variant and init), so the chart and the table cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from saesanity.plots.real import (
    METRIC_AXIS_LABELS,
    legend_columns,
    series_key,
    series_label,
    variant_colour,
)
from saesanity.plots.style import (
    ARCHITECTURE_ORDER,
    STYLE,
    in_order,
    require_columns,
    save_figure,
    shared_legend,
)

# The study's headline metrics, in its order; a family the config does not evaluate at
# the table's L0 is left out by the caller (workflow_scripts/real_summary_bars.py).
SUMMARY_METRICS: tuple[str, ...] = (
    "explained_variance",
    "sae_top_1_test_accuracy",
    "ravel_disentanglement",
    "autointerp_score",
)
SUMMARY_TITLES: dict[str, str] = {
    "explained_variance": "Explained variance",
    "sae_top_1_test_accuracy": "Sparse probing (top-1 accuracy)",
    "ravel_disentanglement": "RAVEL disentanglement",
    "autointerp_score": "AutoInterp score",
}
COV_HATCH = "////"


def summary_metrics(table1_columns: Sequence[str]) -> list[str]:
    """The headline metrics among table 1's metric columns (saesanity.studies.runs.
    table1_metrics), in the study's order: a family the config disables has no column
    there and so no panel here."""
    return [metric for metric in SUMMARY_METRICS if metric in set(table1_columns)]


def _bar_style(variant: str, init: str) -> dict:
    colour = variant_colour(variant)
    # cov: hatched, lighter fill, so iso/cov pairs of one variant stay apart in grey print.
    if init == "cov":
        return dict(facecolor=colour, alpha=0.55, hatch=COV_HATCH, edgecolor="white", linewidth=0)
    return dict(facecolor=colour, edgecolor="white", linewidth=0)


def _seed_note(rows: pd.DataFrame) -> str:
    seeds = pd.to_numeric(rows["seeds"], errors="coerce").fillna(1).astype(int)
    if (seeds <= 1).all():
        return "one seed, no error bars"
    if (seeds > 1).all():
        counts = sorted(set(seeds))
        spread = f"{counts[0]} seeds" if len(counts) == 1 else "seeds"
        return f"mean ± 1 std over {spread}"
    return "mean ± 1 std over seeds; bars without error bars: one seed"


def figure_summary_bars(
    table: pd.DataFrame,
    out_path: str | Path,
    metrics: Sequence[str] = SUMMARY_METRICS,
    title: str | None = None,
) -> Figure:
    """Bar chart of `metrics` from table 1 (saesanity.studies.real.table1): one panel per
    metric, bars grouped by architecture, one bar per (variant, init), ±1 std error bars
    where a row has several seeds. The "best frozen - trained (%)" rows are left out.
    Raises ValueError naming any `<metric>_mean` / `<metric>_std` column that is missing."""
    who = "figure_summary_bars"
    metrics = list(metrics)
    if not metrics:
        raise ValueError(f"{who}: no metric to draw")
    columns = ["architecture", "variant", "init", "seeds"]
    columns += [f"{metric}_{stat}" for metric in metrics for stat in ("mean", "std")]
    require_columns(table, columns, who, "table")
    rows = table[~table["variant"].astype(str).str.contains("%", regex=False)].copy()
    rows["init"] = rows["init"].fillna("").astype(str)
    if rows.empty:
        raise ValueError(f"{who}: table has no variant rows")
    architectures = in_order(rows["architecture"].astype(str), ARCHITECTURE_ORDER)
    series = sorted(
        set(zip(rows["variant"].astype(str), rows["init"], strict=True)),
        key=lambda pair: series_key(*pair),
    )
    # Every series keeps its slot in every group, so a bar's place names it as well.
    width = 0.8 / len(series)
    offsets = {pair: (i - (len(series) - 1) / 2) * width for i, pair in enumerate(series)}
    group_x = np.arange(len(architectures), dtype=float)

    with plt.rc_context(STYLE):
        panel_width = max(2.6, 0.45 + 0.16 * len(series) * len(architectures))
        fig, axes = plt.subplots(
            1,
            len(metrics),
            figsize=(max(5.0, 0.6 + panel_width * len(metrics)), 3.2),
            squeeze=False,
            constrained_layout=True,
        )
        for ax, metric in zip(axes[0], metrics, strict=True):
            for pair in series:
                variant, init = pair
                picked = rows[(rows["variant"] == variant) & (rows["init"] == init)]
                by_arch = picked.set_index(picked["architecture"].astype(str))
                mean = pd.to_numeric(
                    by_arch[f"{metric}_mean"].reindex(architectures), errors="coerce"
                ).to_numpy(dtype=float)
                std = pd.to_numeric(
                    by_arch[f"{metric}_std"].reindex(architectures), errors="coerce"
                ).to_numpy(dtype=float)
                drawn = np.isfinite(mean)
                if not drawn.any():
                    continue
                xs = group_x[drawn] + offsets[pair]
                ax.bar(xs, mean[drawn], width=width, gid="bar", label=series_label(*pair),
                       **_bar_style(variant, init))  # fmt: skip
                spread = np.isfinite(std) & drawn
                if spread.any():
                    ax.errorbar(group_x[spread] + offsets[pair], mean[spread], yerr=std[spread],
                                fmt="none", ecolor="#333333", elinewidth=0.9, capsize=2,
                                gid="errorbar")  # fmt: skip
            ax.axhline(0.0, color="#333333", linewidth=0.6)
            ax.set_xticks(group_x, architectures)
            ax.set_xlim(-0.5, len(architectures) - 0.5)
            ax.grid(axis="x", visible=False)
            ax.set_title(SUMMARY_TITLES.get(metric, METRIC_AXIS_LABELS.get(metric, metric)))
        handles = [
            Patch(label=series_label(*pair), **_bar_style(*pair))
            for pair in series
        ]  # fmt: skip
        shared_legend(fig, handles, max_columns=legend_columns(fig, 5))
        heading = title or "Trained SAE vs random baselines"
        fig.suptitle(f"{heading} ({_seed_note(rows)})")
        save_figure(fig, out_path)
    return fig
