"""Figures for case study 1 (synthetic data): recovery, architecture comparison, curves.

Every public function draws one PDF and writes it atomically (temporary file in the
same directory, then rename), so a Snakemake rule never leaves half a figure behind.

Visual conventions shared by all figures, so a reader can match them across pages:
- colour and marker encode the architecture (fixed Okabe-Ito colours, colour-blind safe);
- line style or hatch encodes the variant (trained SAE or one of the random baselines);
- the init ("iso" or "cov") is spelled out in labels, or drawn as hollow markers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from saesanity.plots.style import (
    ARCHITECTURE_ORDER,
    INIT_LINESTYLES,
    INIT_ORDER,
    REFERENCE_COLOUR,
    STYLE,
    VARIANT_HATCHES,
    VARIANT_LINESTYLES,
    VARIANT_ORDER,
    add_note,
    architecture_colour,
    architecture_marker,
    format_mean_std,
    in_order,
    order_key,
    require_columns,
    save_figure,
    shared_legend,
)
from saesanity.studies.runs import RUN_KEYS

# A synthetic run's identity (studies.runs.RUN_KEYS); a group is a run without its seed.
RUN_COLUMNS = list(RUN_KEYS)
GROUP_COLUMNS = [key for key in RUN_KEYS if key != "seed"]


def _run_key(architecture: str, variant: str = "trained", init: str = "iso") -> tuple:
    """Sort key: architectures, then variants, then inits, each in canonical order."""
    return (
        order_key(architecture, ARCHITECTURE_ORDER),
        order_key(variant, VARIANT_ORDER),
        order_key(init, INIT_ORDER),
    )


def run_label(architecture: str, variant: str, init: str) -> str:
    """Short label: the bare architecture for a trained SAE with iso init, else spelled out."""
    if variant == "trained" and init == "iso":
        return architecture
    return f"{architecture} {variant} ({init})"


def _select(frame: pd.DataFrame, who: str, what: str, **conditions: str) -> pd.DataFrame:
    """Rows matching every condition; a ValueError naming them when there are none."""
    require_columns(frame, conditions, who, what)
    mask = pd.Series(True, index=frame.index)
    for column, value in conditions.items():
        mask &= frame[column] == value
    selected = frame[mask]
    if selected.empty:
        wanted = " and ".join(f"{column} == {value!r}" for column, value in conditions.items())
        raise ValueError(f"{who}: no {what} with {wanted}")
    return selected


def _concat_recoveries(recoveries: Sequence[pd.DataFrame] | pd.DataFrame) -> pd.DataFrame:
    if isinstance(recoveries, pd.DataFrame):
        return recoveries
    tables = [table for table in recoveries if len(table)]
    if not tables:
        return pd.DataFrame(columns=[*RUN_COLUMNS, "feature", "probability", "max_cosine"])
    return pd.concat(tables, ignore_index=True)


def _run_recoveries(
    who: str,
    recoveries: Sequence[pd.DataFrame] | pd.DataFrame,
    runs: pd.DataFrame,
    regime: str,
    columns: list[str],
) -> pd.DataFrame:
    """Per-feature rows of the trained runs of `regime` that are also listed in `runs`,
    so that a figure's two panels describe the same set of runs."""
    table = _concat_recoveries(recoveries)
    table = _select(table, who, "recovery tables", regime=regime, variant="trained")
    require_columns(table, [*RUN_COLUMNS, *columns], who, "recoveries")
    table = table.merge(runs[RUN_COLUMNS].drop_duplicates(), on=RUN_COLUMNS)
    if table.empty:
        raise ValueError(f"{who}: no recovery table matches a {regime!r} trained run in metrics")
    return table


def _trained_groups(frame: pd.DataFrame) -> tuple[list[tuple[str, str]], bool]:
    """(architecture, init) pairs in canonical order, and whether inits must be named."""
    pairs = sorted(
        set(zip(frame["architecture"], frame["init"], strict=True)),
        key=lambda pair: _run_key(pair[0], init=pair[1]),
    )
    return pairs, frame["init"].nunique() > 1


def _trained_label(architecture: str, init: str, several_inits: bool) -> str:
    return f"{architecture} ({init})" if several_inits else architecture


def _architecture_handle(architecture: str, init: str, several_inits: bool) -> Line2D:
    """Legend entry matching both the markers and the lines drawn for a trained group."""
    colour = architecture_colour(architecture)
    return Line2D(
        [],
        [],
        color=colour,
        linestyle=INIT_LINESTYLES.get(init, "-"),
        linewidth=1.4,
        marker=architecture_marker(architecture),
        markersize=5,
        markerfacecolor=colour if init == "iso" else "none",
        label=_trained_label(architecture, init, several_inits),
    )


def _reference_lines(
    ax: plt.Axes, threshold: float | None, chance_level: float | None, vertical: bool
) -> list[Line2D]:
    """Dashed recovery threshold and dotted chance level; returned for the legend."""
    line = ax.axvline if vertical else ax.axhline
    lines = []
    if threshold is not None:
        lines.append(
            line(
                threshold,
                color=REFERENCE_COLOUR,
                linestyle="--",
                linewidth=1.0,
                label=f"recovery threshold ({threshold:g})",
            )
        )
    if chance_level is not None:
        lines.append(
            line(
                chance_level,
                color=REFERENCE_COLOUR,
                linestyle=":",
                linewidth=1.2,
                label=f"random directions (chance, {chance_level:.2f})",
            )
        )
    return lines


# ---------------------------------------------------------------------------
# Figure 1: constant regime.
# ---------------------------------------------------------------------------


def figure_constant(
    metrics: pd.DataFrame,
    recoveries: Sequence[pd.DataFrame] | pd.DataFrame,
    threshold: float,
    out_path: str | Path,
    chance_level: float | None = None,
    note: str | None = None,
) -> None:
    """Constant regime, trained SAEs: (A) explained variance vs recovered fraction per
    seed; (B) ECDF of each ground-truth feature's max cosine to the decoder, pooled over
    seeds, with the recovery threshold and the random-direction chance level."""
    who = "figure_constant"
    runs = _select(metrics, who, "runs", regime="constant", variant="trained")
    require_columns(runs, ["explained_variance", "recovered_fraction"], who, "metrics")
    table = _run_recoveries(who, recoveries, runs, "constant", ["max_cosine"])
    groups, several_inits = _trained_groups(runs)

    with plt.rc_context(STYLE):
        fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(7.2, 3.2), constrained_layout=True)

        for architecture, init in groups:
            group = runs[(runs["architecture"] == architecture) & (runs["init"] == init)]
            colour = architecture_colour(architecture)
            marker = architecture_marker(architecture)
            face = colour if init == "iso" else "none"
            ax_a.scatter(
                group["recovered_fraction"],
                group["explained_variance"],
                s=18,
                marker=marker,
                facecolors=face,
                edgecolors=colour,
                alpha=0.6,
                linewidths=0.8,
                zorder=3,
            )
            ax_a.scatter(
                group["recovered_fraction"].mean(),
                group["explained_variance"].mean(),
                s=70,
                marker=marker,
                facecolors=face,
                edgecolors="black",
                linewidths=1.0,
                zorder=4,
            )
        # The full [0, 1] range is the point: high EV sits next to near-zero recovery.
        ax_a.set_xlim(-0.03, 1.03)
        low = min(0.0, float(runs["explained_variance"].min()) - 0.05)
        ax_a.set_ylim(low, 1.03)
        ax_a.set_xlabel(f"recovered fraction of features (max cos ≥ {threshold:g})")
        ax_a.set_ylabel("explained variance (fraction)")
        ax_a.set_title("A  Reconstruction vs recovery\n(small: seeds, large: mean)", loc="left")

        for architecture, init in groups:
            values = table.loc[
                (table["architecture"] == architecture) & (table["init"] == init), "max_cosine"
            ].dropna()
            if values.empty:
                continue
            values = np.sort(values.to_numpy())
            fraction = np.arange(1, len(values) + 1) / len(values)
            ax_b.step(
                values,
                fraction,
                where="post",
                color=architecture_colour(architecture),
                linestyle=INIT_LINESTYLES.get(init, "-"),
                linewidth=1.4,
            )
        references = _reference_lines(ax_b, threshold, chance_level, vertical=True)
        ax_b.set_xlim(0.0, 1.0)
        ax_b.set_ylim(0.0, 1.02)
        ax_b.set_xlabel("max cosine of feature to any decoder row")
        ax_b.set_ylabel("cumulative fraction of features")
        ax_b.set_title("B  Per-feature recovery\n(ECDF, seeds pooled)", loc="left")
        handles = [_architecture_handle(a, i, several_inits) for a, i in groups]
        shared_legend(fig, handles + references)
        fig.suptitle("Constant regime: trained SAEs")
        add_note(fig, note)
        save_figure(fig, out_path, tight=bool(note))


# ---------------------------------------------------------------------------
# Figure 2: variable regime.
# ---------------------------------------------------------------------------


def _binned_per_run(table: pd.DataFrame, edges: np.ndarray, threshold: float) -> pd.DataFrame:
    """Per run and probability bin: mean max cosine and recovered fraction."""
    table = table.assign(
        bin=pd.cut(table["probability"], edges, labels=False, include_lowest=True),
        recovered=(table["max_cosine"] >= threshold).astype(float),
    )
    keys = ["architecture", "init", "seed", "bin"]
    return table.groupby(keys)[["max_cosine", "recovered"]].mean().reset_index()


def _band_plot(
    ax: plt.Axes,
    per_run: pd.DataFrame,
    column: str,
    centres: np.ndarray,
    colour: str,
    linestyle: str,
    marker: str,
    markerfacecolor: str,
) -> None:
    """Mean over seeds as a line, min..max over seeds as a shaded band."""
    wide = per_run.pivot(index="bin", columns="seed", values=column)
    wide = wide.reindex(range(len(centres)))
    mean = wide.mean(axis=1).to_numpy()
    ax.plot(
        centres,
        mean,
        color=colour,
        linestyle=linestyle,
        marker=marker,
        markerfacecolor=markerfacecolor,
        markersize=3.5,
        linewidth=1.4,
        zorder=3,
    )
    if wide.shape[1] > 1:
        ax.fill_between(
            centres,
            wide.min(axis=1).to_numpy(),
            wide.max(axis=1).to_numpy(),
            color=colour,
            alpha=0.2,
            linewidth=0,
            zorder=2,
        )


def figure_variable(
    metrics: pd.DataFrame,
    recoveries: Sequence[pd.DataFrame] | pd.DataFrame,
    threshold: float,
    out_path: str | Path,
    bins: int = 12,
    chance_level: float | None = None,
    note: str | None = None,
) -> None:
    """Variable regime, trained SAEs: recovery as a function of feature firing probability
    in log-spaced bins. (A) mean max cosine (band: min..max over seeds, faint points: every
    feature of the lowest seed); (B) fraction of features with max cosine >= threshold."""
    who = "figure_variable"
    if bins < 1:
        raise ValueError(f"{who}: bins must be >= 1, got {bins}")
    runs = _select(metrics, who, "runs", regime="variable", variant="trained")
    table = _run_recoveries(who, recoveries, runs, "variable", ["probability", "max_cosine"])
    # A log axis and log-spaced bins need positive probabilities.
    table = table[table["probability"] > 0].dropna(subset=["probability", "max_cosine"])
    if table.empty:
        raise ValueError(f"{who}: recovery tables have no feature with probability > 0")

    low, high = np.log10(table["probability"].min()), np.log10(table["probability"].max())
    if high - low < 1e-9:  # one probability only: widen so that the single bin has width
        low, high = low - 0.5, high + 0.5
    edges = np.logspace(low, high, bins + 1)
    centres = np.sqrt(edges[:-1] * edges[1:])
    per_run = _binned_per_run(table, edges, threshold)
    groups, several_inits = _trained_groups(table)

    with plt.rc_context(STYLE):
        fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(7.2, 3.3), constrained_layout=True)
        for architecture, init in groups:
            colour = architecture_colour(architecture)
            group = table[(table["architecture"] == architecture) & (table["init"] == init)]
            # Background: every feature of one seed, rasterised to keep the PDF small.
            first_seed = group[group["seed"] == group["seed"].min()]
            ax_a.scatter(
                first_seed["probability"],
                first_seed["max_cosine"],
                s=1.5,
                color=colour,
                alpha=0.12,
                linewidths=0,
                rasterized=True,
                zorder=1,
            )
            selected = per_run[
                (per_run["architecture"] == architecture) & (per_run["init"] == init)
            ]
            style = dict(
                centres=centres,
                colour=colour,
                linestyle=INIT_LINESTYLES.get(init, "-"),
                marker=architecture_marker(architecture),
                markerfacecolor=colour if init == "iso" else "none",
            )
            _band_plot(ax_a, selected, "max_cosine", **style)
            _band_plot(ax_b, selected, "recovered", **style)

        references = _reference_lines(ax_a, threshold, chance_level, vertical=False)
        for ax in (ax_a, ax_b):
            ax.set_xscale("log")
            ax.set_xlim(edges[0], edges[-1])
            ax.set_xlabel("feature firing probability per sample (log scale)")
        ax_a.set_ylim(0.0, 1.02)
        ax_a.set_ylabel("max cosine to any decoder row")
        ax_a.set_title(
            "A  Mean recovery per bin\n(line: seed mean, band: seed min–max)", loc="left"
        )
        ax_b.set_ylim(-0.02, 1.02)
        ax_b.set_ylabel(f"recovered fraction (max cos ≥ {threshold:g})")
        ax_b.set_title(f"B  Recovered fraction per bin\n({bins} log-spaced bins)", loc="left")
        handles = [_architecture_handle(a, i, several_inits) for a, i in groups]
        shared_legend(fig, handles + references)
        fig.suptitle("Variable regime: trained SAEs")
        add_note(fig, note)
        save_figure(fig, out_path, tight=bool(note))


# ---------------------------------------------------------------------------
# Figure 3: architectures and baselines.
# ---------------------------------------------------------------------------


def _bar_panel(
    ax: plt.Axes,
    runs: pd.DataFrame,
    column: str,
    positions: dict[tuple[str, str, str], int],
) -> None:
    """Horizontal bars of the seed mean, std error bars, seed values as dots."""
    keys = ["architecture", "variant", "init"]
    values = runs[[*keys, column]].dropna()
    if values.empty:
        return
    # One call per artist type for the whole panel: far faster than one call per bar.
    stats = values.groupby(keys)[column].agg(["mean", "std"]).reset_index()
    y = [positions[key] for key in zip(*(stats[k] for k in keys), strict=True)]
    bars = ax.barh(
        y,
        stats["mean"],
        height=0.7,
        color=[architecture_colour(a) for a in stats["architecture"]],
        alpha=0.85,
        edgecolor="white",  # the hatch is drawn in the edge colour
        linewidth=0.0,
        zorder=2,
    )
    for bar, variant in zip(bars, stats["variant"], strict=True):
        bar.set_hatch(VARIANT_HATCHES.get(variant, ""))
    has_std = stats["std"].notna().to_numpy()  # std is NaN for a single seed
    if has_std.any():
        ax.errorbar(
            stats["mean"][has_std],
            np.asarray(y)[has_std],
            xerr=stats["std"][has_std],
            fmt="none",
            ecolor="black",
            capsize=2,
            elinewidth=0.8,
            zorder=3,
        )
    rng = np.random.default_rng(0)  # jitter only; fixed so reruns give identical PDFs
    seed_y = [positions[key] for key in zip(*(values[k] for k in keys), strict=True)]
    jitter = rng.uniform(-0.18, 0.18, size=len(seed_y))
    ax.scatter(
        values[column],
        np.asarray(seed_y) + jitter,
        s=7,
        color="black",
        alpha=0.7,
        linewidths=0,
        zorder=4,
    )
    ax.axvline(0.0, color="black", linewidth=0.6)


def figure_architectures(
    metrics: pd.DataFrame,
    threshold: float,
    out_path: str | Path,
    chance_level: float | None = None,
    note: str | None = None,
) -> None:
    """Every (architecture, variant, init) of every regime: explained variance, mean max
    cosine and recovered fraction as horizontal bars (mean over seeds, std error bars,
    seeds as dots). One block of three panels per regime, sharing the run labels."""
    who = "figure_architectures"
    columns = ["explained_variance", "mean_max_cosine", "recovered_fraction"]
    require_columns(metrics, [*GROUP_COLUMNS, *columns], who, "metrics")
    if metrics.empty:
        raise ValueError(f"{who}: no runs in metrics")
    regimes = in_order(metrics["regime"], ("constant", "variable"))
    keys = sorted(
        set(map(tuple, metrics[["architecture", "variant", "init"]].to_numpy())),
        key=lambda key: _run_key(*key),
    )
    positions = {key: i for i, key in enumerate(keys)}
    # (metric, panel title, axis label with unit)
    panels = [
        ("explained_variance", "explained variance", "fraction of variance"),
        ("mean_max_cosine", "mean max cosine", "cosine"),
        ("recovered_fraction", f"recovered (max cos ≥ {threshold:g})", "fraction of features"),
    ]

    with plt.rc_context(STYLE):
        # A narrow empty column between regime blocks keeps the blocks visibly apart.
        ratios: list[float] = []
        for r in range(len(regimes)):
            ratios += ([0.25] if r else []) + [1.0] * len(panels)
        height = 1.3 + 0.2 * len(keys)  # ~0.2 in per bar keeps 8 pt labels apart
        fig = plt.figure(
            figsize=(2.0 + 2.0 * len(panels) * len(regimes), height), constrained_layout=True
        )
        grid = fig.add_gridspec(1, len(ratios), width_ratios=ratios)
        axes = []
        for r, regime in enumerate(regimes):
            runs = metrics[metrics["regime"] == regime]
            for c, (column, title, unit) in enumerate(panels):
                index = r * (len(panels) + 1) + c
                ax = fig.add_subplot(grid[0, index], sharey=axes[0] if axes else None)
                axes.append(ax)
                _bar_panel(ax, runs, column, positions)
                ax.set_title(f"{regime} regime\n{title}")
                ax.set_xlabel(unit)
                if column != "explained_variance":
                    ax.set_xlim(0.0, 1.0)
                if column == "mean_max_cosine" and chance_level is not None:
                    ax.axvline(
                        chance_level,
                        color=REFERENCE_COLOUR,
                        linestyle=":",
                        linewidth=1.2,
                        zorder=5,
                    )
                if index:
                    ax.tick_params(axis="y", labelleft=False)
            if r + 1 < len(regimes):
                fig.add_subplot(grid[0, (r + 1) * (len(panels) + 1) - 1]).axis("off")
        first = axes[0]
        first.set_yticks(range(len(keys)), [run_label(*key) for key in keys])
        first.set_ylim(len(keys) - 0.5, -0.5)  # first label on top

        variants = in_order(metrics["variant"], VARIANT_ORDER)
        architectures = in_order(metrics["architecture"], ARCHITECTURE_ORDER)
        handles = [Patch(facecolor=architecture_colour(a), label=a) for a in architectures]
        handles += [
            Patch(facecolor="#BBBBBB", hatch=VARIANT_HATCHES.get(v, ""), edgecolor="white", label=v)
            for v in variants
        ]
        handles.append(
            Line2D(
                [],
                [],
                color="black",
                marker="o",
                linestyle="-",
                markersize=3,
                label="seeds (dots), ±1 std (bar)",
            )
        )
        if chance_level is not None:
            handles.append(
                Line2D(
                    [],
                    [],
                    color=REFERENCE_COLOUR,
                    linestyle=":",
                    label=f"random directions (chance, {chance_level:.2f})",
                )
            )
        shared_legend(fig, handles, max_columns=5)
        add_note(fig, note)
        save_figure(fig, out_path, tight=bool(note))


# ---------------------------------------------------------------------------
# Figure 4: summary table.
# ---------------------------------------------------------------------------

# (summary column prefix, header, is a count)
_TABLE_METRICS = [
    ("explained_variance", "EV", False),
    ("l0", "L0", False),
    ("dead_fraction", "dead frac.", False),
    ("recovered_fraction", "recovered frac.", False),
    ("recovered_count", "recovered count", True),
    ("mean_max_cosine", "mean max cos", False),
    ("samples_seen", "samples seen", True),
]


def figure_summary_table(summary: pd.DataFrame, out_path: str | Path) -> None:
    """The per-group summary (mean ± std over seeds) rendered as a table figure."""
    who = "figure_summary_table"
    needed = [*GROUP_COLUMNS, "seeds"]
    for prefix, _, _ in _TABLE_METRICS:
        needed += [f"{prefix}_mean", f"{prefix}_std"]
    require_columns(summary, needed, who, "summary")
    if summary.empty:
        raise ValueError(f"{who}: summary has no rows")

    keys = [
        (order_key(regime, ("constant", "variable")), _run_key(architecture, variant, init))
        for regime, architecture, variant, init in summary[GROUP_COLUMNS].itertuples(index=False)
    ]
    summary = summary.iloc[sorted(range(len(keys)), key=keys.__getitem__)]
    header = ["regime", "architecture", "variant", "init", "seeds"]
    header += [name for _, name, _ in _TABLE_METRICS]
    rows = []
    for _, row in summary.iterrows():
        cells = [str(row[column]) for column in GROUP_COLUMNS]
        cells.append(str(int(row["seeds"])) if pd.notna(row["seeds"]) else "–")
        for prefix, _, count in _TABLE_METRICS:
            cells.append(format_mean_std(row[f"{prefix}_mean"], row[f"{prefix}_std"], count))
        rows.append(cells)

    with plt.rc_context(STYLE):
        row_height = 0.22  # inches; fits 8 pt text with padding
        fig = plt.figure(figsize=(13.0, 0.6 + row_height * (len(rows) + 1)))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.axis("off")
        table = ax.table(cellText=rows, colLabels=header, loc="upper center", cellLoc="center")
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        table.auto_set_column_width(list(range(len(header))))
        cell_height = row_height / fig.get_figheight()
        for (r, _), cell in table.get_celld().items():
            cell.set_height(cell_height)
            cell.set_linewidth(0.3)
            if r == 0:
                cell.set_text_props(fontweight="bold")
                cell.set_facecolor("#DDDDDD")
            elif r % 2 == 0:  # zebra stripes guide the eye along long rows
                cell.set_facecolor("#F2F2F2")
        save_figure(fig, out_path, tight=True)


# ---------------------------------------------------------------------------
# Figure 5: training curves.
# ---------------------------------------------------------------------------


def _curve_panel(
    ax: plt.Axes,
    curves: pd.DataFrame,
    column: str,
    group_keys: list[tuple[str, str, str]],
    log_y: bool,
) -> None:
    """Thin line per seed and a thick seed-mean line per (architecture, variant, init)."""
    data = curves[["architecture", "variant", "init", "seed", "samples", column]].dropna()
    if log_y:
        positive = data[column] > 0
        # Log only where it helps: values spanning over a decade (e.g. an MSE that falls
        # by orders of magnitude, a ReLU L0 that shrinks from thousands). Zeros, such as
        # the L0 of a dead start, cannot sit on a log axis and are left out there.
        log_y = bool(positive.any()) and (
            data.loc[positive, column].max() > 10 * data.loc[positive, column].min()
        )
        if log_y:
            data = data[positive]
    groups = dict(tuple(data.groupby(["architecture", "variant", "init"])))
    for architecture, variant, init in group_keys:  # canonical order fixes the layering
        group = groups.get((architecture, variant, init))
        if group is None:
            continue
        style = dict(
            color=architecture_colour(architecture),
            linestyle=VARIANT_LINESTYLES.get(variant, "-"),
        )
        for _, seed_curve in group.groupby("seed"):
            seed_curve = seed_curve.sort_values("samples")
            ax.plot(
                seed_curve["samples"] / 1e6, seed_curve[column], linewidth=0.5, alpha=0.35, **style
            )
        mean = group.groupby("samples")[column].mean()
        ax.plot(
            mean.index / 1e6,
            mean.to_numpy(),
            linewidth=1.3,
            marker="o" if init == "cov" else None,
            markevery=0.1,
            markersize=3,
            markerfacecolor="none",
            **style,
        )
    if log_y:
        ax.set_yscale("log")


def figure_curves(curves: pd.DataFrame, out_path: str | Path) -> None:
    """Training curves, one row per regime: MSE, explained variance and L0 against samples
    seen (log y for MSE and L0 when they span more than a decade). Thin lines: single
    seeds; thick line: mean over seeds. Shows whether the loss has reached a plateau."""
    who = "figure_curves"
    # (column, panel title, axis label with unit, log y allowed)
    panels = [
        ("mse", "reconstruction MSE", "‖x − x̂‖² per sample", True),
        ("explained_variance", "explained variance", "fraction of variance", False),
        ("l0", "L0", "active latents per sample", True),
    ]
    require_columns(curves, [*RUN_COLUMNS, "samples"] + [p[0] for p in panels], who, "curves")
    curves = curves.dropna(subset=["samples"])
    if curves.empty:
        raise ValueError(f"{who}: curves has no rows")
    regimes = in_order(curves["regime"], ("constant", "variable"))
    group_keys = sorted(
        set(map(tuple, curves[["architecture", "variant", "init"]].to_numpy())),
        key=lambda key: _run_key(*key),
    )

    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            len(regimes),
            len(panels),
            figsize=(7.5, 0.9 + 2.3 * len(regimes)),
            squeeze=False,
            constrained_layout=True,
        )
        for r, regime in enumerate(regimes):
            for c, (column, title, unit, log_y) in enumerate(panels):
                ax = axes[r, c]
                _curve_panel(ax, curves[curves["regime"] == regime], column, group_keys, log_y)
                ax.set_title(f"{regime}: {title}", loc="left")
                ax.set_xlabel("samples seen (millions)")
                ax.set_ylabel(unit)

        architectures = in_order(curves["architecture"], ARCHITECTURE_ORDER)
        variants = in_order(curves["variant"], VARIANT_ORDER)
        handles = [
            Line2D([], [], color=architecture_colour(a), linewidth=2, label=a)
            for a in architectures
        ]
        handles += [
            Line2D([], [], color="black", linestyle=VARIANT_LINESTYLES.get(v, "-"), label=v)
            for v in variants
        ]
        if "cov" in set(curves["init"]):
            handles.append(
                Line2D([], [], color="black", marker="o", markerfacecolor="none", label="cov init")
            )
        handles.append(Line2D([], [], color="black", linewidth=0.5, alpha=0.5, label="single seed"))
        shared_legend(fig, handles, max_columns=5)
        save_figure(fig, out_path)
