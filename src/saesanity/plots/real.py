"""Figures for case study 2 (real LLM activations): trained SAEs vs random baselines.

Every public function draws one PDF (written atomically through `style.save_figure`) and
returns the matplotlib Figure, already closed, so tests can inspect what was drawn.

Visual conventions (panels are architectures, so here colour encodes the variant):
- colour and marker encode the variant: trained SAE in near-black, Frozen Decoder in
  blue, Soft-Frozen Decoder in light blue (it is a relaxed Frozen Decoder), Frozen
  Encoder in vermillion (Okabe-Ito colours, colour-blind safe);
- the init is the line style and marker fill: "iso" solid with filled markers, "cov"
  dashed with hollow markers;
- reference values (clean-model CE loss, the soft-frozen cap tau) are grey dashed or
  dotted lines.
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter, NullLocator

from saesanity.core.checkpoint import atomic_write
from saesanity.plots.style import (
    ARCHITECTURE_ORDER,
    INIT_LINESTYLES,
    INIT_ORDER,
    REFERENCE_COLOUR,
    STYLE,
    VARIANT_ORDER,
    add_note,
    format_mean_std,
    in_order,
    order_key,
    require_columns,
    save_figure,
    shared_legend,
)
from saesanity.studies.runs import REAL_RUN_KEYS

SERIES_KEYS = ["variant", "init"]

VARIANT_COLOURS: dict[str, str] = {
    "trained": "#1A1A1A",  # near-black
    "frozen_decoder": "#0072B2",  # blue
    "soft_frozen_decoder": "#56B4E9",  # sky blue
    "frozen_encoder": "#D55E00",  # vermillion
}
_EXTRA_VARIANT_COLOURS = ("#009E73", "#CC79A7", "#E69F00", "#7F7F7F")
VARIANT_MARKERS: dict[str, str] = {
    "trained": "o",
    "frozen_decoder": "s",
    "soft_frozen_decoder": "D",
    "frozen_encoder": "^",
}
VARIANT_NAMES: dict[str, str] = {
    "trained": "Trained",
    "frozen_decoder": "Frozen decoder",
    "soft_frozen_decoder": "Soft-frozen decoder",
    "frozen_encoder": "Frozen encoder",
}

# Table headers for known metric names; unknown metrics keep their own name.
METRIC_LABELS: dict[str, str] = {
    "explained_variance": "EV",
    "l0": "L0",
    "dead_fraction": "Dead",
    "ce_loss": "CE loss",
    "kl_divergence": "KL",
    "ce_loss_score": "CE score",
    "kl_div_score": "KL score",
    "ravel_disentanglement": "RAVEL",
    "sae_top_1_test_accuracy": "Probe top-1",
    "sae_top_5_test_accuracy": "Probe top-5",
    "autointerp_score": "AutoInterp",
}
# Axis labels for the line figures.
METRIC_AXIS_LABELS: dict[str, str] = {
    "explained_variance": "explained variance",
    "l0": "L0 (measured)",
    "dead_fraction": "dead fraction",
    "ce_loss": "CE loss (nats/token)",
    "kl_divergence": "KL divergence (nats/token)",
    "ce_loss_score": "CE loss score",
    "kl_div_score": "KL divergence score",
    "sae_top_1_test_accuracy": "sparse probing, top-1 test accuracy",
    "sae_top_5_test_accuracy": "sparse probing, top-5 test accuracy",
}
_X_LABELS = {"target_l0": "L0 (target)", "l0": "L0 (measured, mean over seeds)"}


# ---------------------------------------------------------------------------
# Shared helpers.
# ---------------------------------------------------------------------------


def variant_colour(variant: str) -> str:
    """Fixed colour of a variant; unknown names get a stable fallback colour."""
    if variant in VARIANT_COLOURS:
        return VARIANT_COLOURS[variant]
    return _EXTRA_VARIANT_COLOURS[zlib.crc32(variant.encode()) % len(_EXTRA_VARIANT_COLOURS)]


def series_label(variant: str, init: str) -> str:
    """Legend label of a (variant, init) series, e.g. "Frozen decoder (cov)"."""
    name = VARIANT_NAMES.get(variant, variant.replace("_", " ").capitalize())
    return f"{name} ({init})" if init else name


def series_key(variant: str, init: str) -> tuple:
    return (order_key(variant, VARIANT_ORDER), order_key(init, INIT_ORDER))


def _series_style(variant: str, init: str) -> dict:
    colour = variant_colour(variant)
    return dict(
        color=colour,
        linestyle=INIT_LINESTYLES.get(init, "-"),
        linewidth=1.8 if variant == "trained" else 1.3,
        marker=VARIANT_MARKERS.get(variant, "P"),
        markersize=5,
        markerfacecolor=colour if init != "cov" else "white",
        markeredgecolor=colour,
    )


def series_handle(variant: str, init: str) -> Line2D:
    return Line2D([], [], label=series_label(variant, init), **_series_style(variant, init))


def _check_metrics(metrics: pd.DataFrame, columns: Sequence[str], who: str) -> None:
    require_columns(metrics, [*REAL_RUN_KEYS, *columns], who, "metrics")
    if metrics.empty:
        raise ValueError(f"{who}: metrics has no rows")


def _series_stats(metrics: pd.DataFrame, metric: str, x: str) -> pd.DataFrame:
    """Per (architecture, variant, init, target_l0): x position, metric mean and std over
    seeds (std NaN for a single seed). Rows where the metric is missing are left out."""
    data = metrics.dropna(subset=[metric])
    keys = ["architecture", *SERIES_KEYS, "target_l0"]
    grouped = data.groupby(keys, sort=False)
    stats = grouped[metric].agg(["mean", "std", "count"]).reset_index()
    stats["x"] = grouped[x].mean().to_numpy() if x != "target_l0" else stats["target_l0"]
    return stats


def _metric_panels(
    axes: Sequence[Axes],
    architectures: Sequence[str],
    stats: pd.DataFrame,
    x: str,
    log_x: bool,
) -> set[tuple[str, str]]:
    """One line (or point) per (variant, init) in each architecture's panel; error bars
    are ±1 std over seeds. Returns the (variant, init) pairs drawn."""
    drawn: set[tuple[str, str]] = set()
    all_x = stats["x"].to_numpy(dtype=float)
    # Linear axis: nudge by a share of the x range (of the value itself for a single L0).
    linear_scale = float(np.ptp(all_x)) or max(float(np.abs(all_x).max()), 1.0)
    for ax, architecture in zip(axes, architectures, strict=True):
        panel = stats[stats["architecture"] == architecture]
        pairs = sorted(
            set(zip(panel["variant"], panel["init"], strict=True)),
            key=lambda pair: series_key(*pair),
        )
        for index, (variant, init) in enumerate(pairs):
            series = panel[(panel["variant"] == variant) & (panel["init"] == init)]
            series = series.sort_values("x")
            # Nudge the series apart horizontally so overlapping error bars stay legible.
            nudge = (index - (len(pairs) - 1) / 2) * 0.015
            xs = series["x"].to_numpy(dtype=float)
            xs = xs * np.exp(nudge) if log_x else xs + nudge * linear_scale
            style = _series_style(variant, init)
            ax.plot(xs, series["mean"], gid="series", label=series_label(variant, init), **style)
            std = series["std"].to_numpy(dtype=float)
            if np.isfinite(std).any():
                ax.errorbar(
                    xs,
                    series["mean"],
                    yerr=np.nan_to_num(std),
                    fmt="none",
                    ecolor=style["color"],
                    elinewidth=0.9,
                    capsize=0,
                    alpha=0.8,
                )
            drawn.add((variant, init))
        ax.set_title(architecture)
        _x_axis(ax, stats, x, log_x)
    return drawn


def _x_axis(ax: Axes, stats: pd.DataFrame, x: str, log_x: bool) -> None:
    if log_x:
        ax.set_xscale("log")
    if x == "target_l0":
        ticks = sorted(set(stats["target_l0"].astype(int)))
        ax.set_xticks(ticks, [str(tick) for tick in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        low, high = ticks[0], ticks[-1]
        if log_x:
            ax.set_xlim(low / 1.15, high * 1.15)
        else:
            pad = 0.1 * (high - low) if high > low else max(1.0, 0.1 * abs(low))
            ax.set_xlim(low - pad, high + pad)


def _use_log_x(stats: pd.DataFrame) -> bool:
    values = stats["x"].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    return bool(len(values)) and values.min() > 0 and values.max() > 1.5 * values.min()


def _reference_line(ax: Axes, value: float | None, label: str | None) -> None:
    if value is None or not np.isfinite(value):
        return
    ax.axhline(
        value,
        color=REFERENCE_COLOUR,
        linestyle="--",
        linewidth=1.0,
        gid="reference",
        label=label or f"reference ({value:.3g})",
        zorder=1,
    )


def _reference_handle(value: float, label: str | None) -> Line2D:
    return Line2D(
        [],
        [],
        color=REFERENCE_COLOUR,
        linestyle="--",
        linewidth=1.0,
        label=label or f"reference ({value:.3g})",
    )


def _legend_handles(drawn: set[tuple[str, str]]) -> list[Line2D]:
    return [series_handle(*pair) for pair in sorted(drawn, key=lambda p: series_key(*p))]


def figure_width(panels: int) -> float:
    """Figure width in inches: ~2.3 in per panel, at least enough for a readable legend."""
    return max(5.0, 0.8 + 2.3 * panels)


def legend_columns(fig: Figure, most: int = 4) -> int:
    # About 2 in per legend entry, so a narrow figure's legend wraps instead of clipping.
    return max(1, min(most, int(fig.get_figwidth() // 2.0)))


def _errorbar_note(metrics: pd.DataFrame) -> str:
    seeds = metrics.groupby(["architecture", *SERIES_KEYS, "target_l0"])["seed"].nunique()
    return "mean ± 1 std over seeds" if (seeds > 1).any() else "single seed"


# ---------------------------------------------------------------------------
# Metric vs L0.
# ---------------------------------------------------------------------------


def figure_metric_vs_l0(
    metrics: pd.DataFrame,
    metric: str,
    out_path: str | Path,
    ylabel: str | None = None,
    reference: float | None = None,
    reference_label: str | None = None,
    *,
    x: str = "target_l0",
) -> Figure:
    """`metric` vs L0: one panel per architecture (shared y axis), one line per
    (variant, init) with markers at the seed mean and ±1 std error bars when there are
    several seeds. x is the target L0 (default; log axis when the L0s span > 1.5x) or,
    with x="l0", the measured L0 averaged over seeds. A single L0 gives points. The
    optional `reference` is a dashed horizontal line (e.g. the clean-model CE loss)."""
    who = "figure_metric_vs_l0"
    if x not in _X_LABELS:
        raise ValueError(f"{who}: x must be one of {sorted(_X_LABELS)}, not {x!r}")
    _check_metrics(metrics, [metric, x], who)
    stats = _series_stats(metrics, metric, x)
    if stats.empty:
        raise ValueError(f"{who}: column {metric!r} has no values")
    architectures = in_order(stats["architecture"], ARCHITECTURE_ORDER)
    log_x = _use_log_x(stats)

    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            1,
            len(architectures),
            figsize=(figure_width(len(architectures)), 3.0),
            sharey=True,
            squeeze=False,
            constrained_layout=True,
        )
        row = list(axes[0])
        drawn = _metric_panels(row, architectures, stats, x, log_x)
        handles = _legend_handles(drawn)
        for ax in row:
            _reference_line(ax, reference, reference_label)
            ax.set_xlabel(_X_LABELS[x])
        if reference is not None and np.isfinite(reference):
            handles.append(_reference_handle(reference, reference_label))
        row[0].set_ylabel(ylabel or METRIC_AXIS_LABELS.get(metric, metric))
        shared_legend(fig, handles, max_columns=legend_columns(fig))
        fig.suptitle(f"{METRIC_AXIS_LABELS.get(metric, metric)} vs L0 ({_errorbar_note(metrics)})")
        save_figure(fig, out_path)
    return fig


def figure_reconstruction(
    metrics: pd.DataFrame, out_path: str | Path, note: str | None = None
) -> Figure:
    """The study's reconstruction figure: rows are explained variance, CE loss with the
    reconstruction spliced in, and KL divergence to the clean model, each vs target L0;
    columns are architectures; one line per (variant, init), ±1 std over seeds. The CE
    row has the clean-model CE loss as a dashed line; the zero-ablation CE loss (the
    score's other reference, usually far above the plotted range) is written in the
    legend. Both references are used when their columns are present. `note` (how long
    the runs trained, whether that is settled) goes above the title."""
    who = "figure_reconstruction"
    rows = [
        ("explained_variance", "explained variance"),
        ("ce_loss", "CE loss (nats/token)"),
        ("kl_divergence", "KL divergence (nats/token)"),
    ]
    _check_metrics(metrics, [metric for metric, _ in rows], who)
    all_stats = {metric: _series_stats(metrics, metric, "target_l0") for metric, _ in rows}
    empty = [metric for metric, stats in all_stats.items() if stats.empty]
    if empty:
        raise ValueError(f"{who}: columns {empty} have no values")
    architectures = in_order(metrics["architecture"], ARCHITECTURE_ORDER)
    log_x = _use_log_x(pd.concat(all_stats.values()))
    clean = _mean_or_none(metrics, "ce_loss_clean")
    zero = _mean_or_none(metrics, "ce_loss_zero_ablation")

    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            len(rows),
            len(architectures),
            figsize=(figure_width(len(architectures)), 1.0 + 2.2 * len(rows)),
            sharex=True,
            sharey="row",
            squeeze=False,
            constrained_layout=True,
        )
        drawn: set[tuple[str, str]] = set()
        for r, (metric, ylabel) in enumerate(rows):
            stats = all_stats[metric]
            # An architecture without this metric keeps an empty, titled panel.
            drawn |= _metric_panels(list(axes[r]), architectures, stats, "target_l0", log_x)
            axes[r][0].set_ylabel(ylabel)
            if r:
                for ax in axes[r]:
                    ax.set_title("")
        handles = _legend_handles(drawn)
        if clean is not None:
            label = f"clean model CE ({clean:.3g})"
            for ax in axes[1]:
                _reference_line(ax, clean, label)
            handles.append(_reference_handle(clean, label))
        if zero is not None:
            # Text-only legend entry: a line this far above the data would squash the row.
            handles.append(Line2D([], [], linestyle="none", label=f"zero-ablation CE: {zero:.3g}"))
        for ax in axes[-1]:
            ax.set_xlabel(_X_LABELS["target_l0"])
        shared_legend(fig, handles, max_columns=legend_columns(fig))
        fig.suptitle(f"Reconstruction vs L0 ({_errorbar_note(metrics)})")
        add_note(fig, note)
        save_figure(fig, out_path, tight=note is not None)
    return fig


def _mean_or_none(metrics: pd.DataFrame, column: str) -> float | None:
    if column not in metrics.columns:
        return None
    values = pd.to_numeric(metrics[column], errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


# ---------------------------------------------------------------------------
# Lazy-training diagnostic.
# ---------------------------------------------------------------------------


def _fraction_label(fraction: float) -> str:
    return f"{100 * fraction:.3g}% of training"


def figure_drift(drift: pd.DataFrame, out_path: str | Path, tau: float | None = 0.8) -> Figure:
    """Lazy-training diagnostic: histograms of cos(d_j at snapshot, d_j at init) over the
    decoder rows of the trained SAEs. One panel per architecture, one step histogram per
    snapshot (fraction of training), as a fraction of latents. Seeds and inits are
    pooled; with several target L0s each panel uses its architecture's middle L0 (the
    lower middle one for an even count; named in the title). A dotted vertical line
    marks tau, the soft-frozen decoder's cap."""
    who = "figure_drift"
    columns = [*REAL_RUN_KEYS, "fraction_of_training", "cosine_to_init"]
    require_columns(drift, columns, who, "drift")
    trained = drift[drift["variant"] == "trained"].dropna(
        subset=["fraction_of_training", "cosine_to_init"]
    )
    if trained.empty:
        raise ValueError(f"{who}: drift has no snapshot of a trained run")
    architectures = in_order(trained["architecture"], ARCHITECTURE_ORDER)
    trained = trained.assign(fraction=trained["fraction_of_training"].astype(float).round(4))
    fractions = sorted(set(trained["fraction"]))
    cmap = plt.get_cmap("viridis")
    colours = {
        fraction: cmap(0.85 * i / max(len(fractions) - 1, 1))
        for i, fraction in enumerate(fractions)
    }
    cosine = trained["cosine_to_init"].to_numpy(dtype=float)
    low = min(float(cosine.min()), tau - 0.1 if tau is not None else 1.0)
    low = max(-1.0, np.floor(low * 20) / 20)
    edges = np.linspace(low, 1.0, 41)

    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            1,
            len(architectures),
            figsize=(figure_width(len(architectures)), 2.9),
            sharex=True,
            sharey=True,
            squeeze=False,
            constrained_layout=True,
        )
        for ax, architecture in zip(axes[0], architectures, strict=True):
            runs = trained[trained["architecture"] == architecture]
            l0s = sorted(set(runs["target_l0"]))
            l0 = l0s[(len(l0s) - 1) // 2]  # the middle one (the lower middle when even)
            runs = runs[runs["target_l0"] == l0]
            for fraction in fractions:
                values = runs.loc[runs["fraction"] == fraction, "cosine_to_init"].to_numpy(float)
                if not len(values):
                    continue
                ax.hist(
                    np.clip(values, edges[0], edges[-1]),
                    bins=edges,
                    weights=np.full(len(values), 1.0 / len(values)),
                    histtype="step",
                    linewidth=1.3,
                    color=colours[fraction],
                    label=_fraction_label(fraction),
                )
            if tau is not None:
                ax.axvline(tau, color=REFERENCE_COLOUR, linestyle=":", linewidth=1.2)
            seeds = runs["seed"].nunique()
            ax.set_title(f"{architecture} (L0 = {int(l0)}, {seeds} seed{'s' * (seeds > 1)})")
            ax.set_xlabel("cos(decoder row, its init)")
            ax.set_xlim(edges[0], 1.0)
        axes[0][0].set_ylabel("fraction of latents")
        handles = [
            Line2D([], [], color=colours[f], linewidth=1.3, label=_fraction_label(f))
            for f in fractions
        ]
        if tau is not None:
            handles.append(
                Line2D(
                    [],
                    [],
                    color=REFERENCE_COLOUR,
                    linestyle=":",
                    linewidth=1.2,
                    label=f"τ = {tau:g} (soft-frozen cap)",
                )
            )
        shared_legend(fig, handles, max_columns=legend_columns(fig, 5))
        fig.suptitle("Decoder drift from initialisation during training (trained SAEs)")
        save_figure(fig, out_path)
    return fig


# ---------------------------------------------------------------------------
# Table 1.
# ---------------------------------------------------------------------------


def _is_percent_row(variant: str) -> bool:
    return "%" in str(variant)


def _table_metrics(table: pd.DataFrame, who: str) -> list[str]:
    """Metric names with a `_mean` column, known metrics first in the study's order."""
    metrics = [c[: -len("_mean")] for c in table.columns if str(c).endswith("_mean")]
    missing = [f"{m}_std" for m in metrics if f"{m}_std" not in table.columns]
    if missing:
        raise ValueError(f"{who}: table lacks columns {missing}")
    if not metrics:
        raise ValueError(f"{who}: table has no metric columns (<metric>_mean, <metric>_std)")
    known = list(METRIC_LABELS)
    return sorted(
        metrics, key=lambda m: (known.index(m) if m in known else len(known), metrics.index(m))
    )


def _format_percent(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:+.1f}%"


def figure_table1(
    table: pd.DataFrame, out_path: str | Path, title: str, note: str | None = None
) -> Figure:
    """The study's Table 1 as a PDF table: per architecture, each variant and init with
    every metric as "mean ± std" over seeds, then the "best frozen - trained (%)" row
    with signed percentages (shaded). Known metrics get short headers (EV, L0, Dead,
    CE loss, KL, CE score, KL score); other metrics keep their column name. `note`
    (how long the runs trained, whether that is settled) goes above the title."""
    who = "figure_table1"
    require_columns(table, ["architecture", "variant", "init", "seeds"], who, "table")
    if table.empty:
        raise ValueError(f"{who}: table has no rows")
    metrics = _table_metrics(table, who)

    def row_key(i: int) -> tuple:
        architecture, variant, init = table.iloc[i][["architecture", "variant", "init"]]
        return (
            order_key(str(architecture), ARCHITECTURE_ORDER),
            _is_percent_row(variant),
            series_key(str(variant), str(init)),
        )

    ordered = table.iloc[sorted(range(len(table)), key=row_key)]
    header = ["architecture", "variant", "init", "seeds"]
    header += [METRIC_LABELS.get(metric, metric) for metric in metrics]
    rows: list[list[str]] = []
    percent_rows: list[int] = []
    block_start: list[int] = []
    previous = None
    for _, row in ordered.iterrows():
        percent = _is_percent_row(row["variant"])
        architecture = str(row["architecture"])
        if architecture != previous:
            block_start.append(len(rows))
        cells = [architecture if architecture != previous else ""]
        previous = architecture
        if percent:
            cells += ["best frozen − trained", ""]
        else:
            cells += [VARIANT_NAMES.get(row["variant"], str(row["variant"])), str(row["init"])]
        seeds = pd.to_numeric(pd.Series([row["seeds"]]), errors="coerce").iloc[0]
        cells.append(str(int(seeds)) if pd.notna(seeds) and not percent else "")
        for metric in metrics:
            mean = pd.to_numeric(pd.Series([row[f"{metric}_mean"]]), errors="coerce").iloc[0]
            std = pd.to_numeric(pd.Series([row[f"{metric}_std"]]), errors="coerce").iloc[0]
            if percent:
                cells.append(_format_percent(mean))
            else:
                cells.append(format_mean_std(mean, std))
        if percent:
            percent_rows.append(len(rows))
        rows.append(cells)

    with plt.rc_context(STYLE):
        row_height = 0.22  # inches; fits 8 pt text with padding
        title_height = 0.4
        height = title_height + row_height * (len(rows) + 1) + 0.1
        # Width from the longest text per column (~0.07 in per 8 pt character) plus padding.
        widths = [max(len(text) for text in column) for column in zip(header, *rows, strict=True)]
        fig = plt.figure(figsize=(0.5 + sum(0.07 * w + 0.15 for w in widths), height))
        ax = fig.add_axes((0, 0, 1, 1 - title_height / height))
        ax.axis("off")
        rendered = ax.table(cellText=rows, colLabels=header, loc="upper center", cellLoc="center")
        rendered.auto_set_font_size(False)
        rendered.set_fontsize(8)
        rendered.auto_set_column_width(list(range(len(header))))
        cell_height = row_height / (height - title_height)
        # Alternate shading per architecture block; the percent rows stand out in blue.
        shaded = set()
        for b, start in enumerate(block_start):
            end = block_start[b + 1] if b + 1 < len(block_start) else len(rows)
            if b % 2:
                shaded.update(range(start, end))
        for (r, c), cell in rendered.get_celld().items():
            cell.set_height(cell_height)
            cell.set_linewidth(0.3)
            if r == 0:
                cell.set_text_props(fontweight="bold")
                cell.set_facecolor("#DDDDDD")
            elif r - 1 in percent_rows:
                cell.set_facecolor("#DCEBF7")
                if c >= 1:
                    cell.set_text_props(fontstyle="italic")
            elif r - 1 in shaded:
                cell.set_facecolor("#F2F2F2")
        fig.suptitle(title, y=1 - 0.08 / height, va="top")
        add_note(fig, note)
        save_figure(fig, out_path, tight=True)
    return fig


def figure_sparse_probing(
    metrics: pd.DataFrame, baselines: pd.DataFrame, ks: list[int], out_path: str | Path
) -> None:
    """One page per k: SAE top-k test accuracy vs L0 per architecture, one line per
    variant, the residual stream's top-k accuracy as the dashed reference line."""
    overall = baselines.set_index("family").loc["all"]
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in ks:
            metric = f"sae_top_{k}_test_accuracy"
            figures.append(
                figure_metric_vs_l0(
                    metrics.dropna(subset=[metric]),
                    metric,
                    Path(tmp) / f"top{k}.pdf",
                    reference=float(overall[f"llm_top_{k}_test_accuracy"]),
                    reference_label=f"residual stream, top-{k} dims",
                )
            )

    def write(tmp_path: Path) -> None:
        # No creation date: a rerun writes the same bytes (as style.save_figure does).
        with PdfPages(tmp_path, metadata={"CreationDate": None}) as pdf:
            for figure in figures:
                pdf.savefig(figure)

    atomic_write(out_path, write)
    for figure in figures:
        plt.close(figure)
