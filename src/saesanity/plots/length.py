"""Figures of the training-length study, in the conventions of plots.py."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from saesanity.plots.style import (
    ARCHITECTURE_ORDER,
    STYLE,
    architecture_colour,
    architecture_marker,
    in_order,
    require_columns,
    save_figure,
    shared_legend,
)


def _ticks_at(ax, values: pd.Series, most: int = 8) -> None:
    """Ticks at the measured x values, in plain numbers (log axes otherwise print
    powers that say nothing about the points)."""
    ticks = np.unique(values.to_numpy(dtype=float))
    if len(ticks) > most:
        ticks = ticks[:: int(np.ceil(len(ticks) / most))]
    ax.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
    ax.xaxis.set_minor_locator(plt.NullLocator())


# (column, panel title, axis label)
LENGTH_PANELS = [
    ("recovered_fraction", "recovered features", "fraction with max cos ≥ {threshold}"),
    ("mean_max_cosine", "mean max cosine", "mean over ground-truth features"),
    ("explained_variance", "explained variance", "fraction of variance (held out)"),
]


# One line style per (lr, batch size) setting of an architecture: eight that tell apart
# in print (a long run's config trains up to five learning rates of one architecture).
SETTING_LINESTYLES = [
    "-",
    "--",
    ":",
    "-.",
    (0, (8, 2, 1, 2, 1, 2)),
    (0, (1, 4)),
    (0, (10, 4)),
    (0, (4, 1, 1, 1, 1, 1, 1, 1)),
]


def _auxk_values(rows: pd.DataFrame) -> pd.Series:
    """AuxK's value form per row (tables written before it was a setting: post-ReLU)."""
    if "cfg_auxk_values" not in rows.columns:
        return pd.Series("post_relu", index=rows.index)
    return rows["cfg_auxk_values"].fillna("post_relu")


def _settings(rows: pd.DataFrame) -> list[tuple]:
    """The (lr, batch size, AuxK values) settings among one architecture's rows, in
    order; one unnamed setting for tables without lr and batch size (the main runs)."""
    if not {"cfg_lr", "cfg_batch_size"} <= set(rows.columns):
        return [(None, None, None)]
    triples = rows[["cfg_lr", "cfg_batch_size"]].assign(auxk=_auxk_values(rows))
    return sorted(
        (float(lr), int(batch), auxk)
        for lr, batch, auxk in triples.drop_duplicates().itertuples(index=False)
    )


def _setting_label(architecture: str, lr: float, batch: int, auxk: str) -> str:
    label = f"{architecture}, lr {lr:g}, batch {batch:,}"
    return label if auxk == "post_relu" else f"{label}, AuxK on {auxk.replace('_', '-')}s"


def figure_length(frame: pd.DataFrame, out_path: str | Path, recovery_threshold: float) -> None:
    """Recovery and EV against samples seen (log x): one column per regime, one line per
    architecture and (lr, batch size) setting (mean over seeds; a line style per
    setting when an architecture has several), band = min-max over seeds. Hollow
    markers: the final checkpoint of a run that stopped before the next doubling
    (plateau rule)."""
    who = "figure_length"
    columns = ["regime", "architecture", "seed", "samples_seen", "final"]
    require_columns(frame, columns + [p[0] for p in LENGTH_PANELS], who, "length table")
    if frame.empty:
        raise ValueError(f"{who}: length table has no rows")
    regimes = in_order(frame["regime"], ("constant", "variable"))
    architectures = in_order(frame["architecture"], ARCHITECTURE_ORDER)
    # Never average different settings as if they were seeds: each is its own line.
    settings = {a: _settings(frame[frame["architecture"] == a]) for a in architectures}
    several = any(len(found) > 1 for found in settings.values())
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            len(LENGTH_PANELS),
            len(regimes),
            figsize=(3.4 * len(regimes) + 0.6, 0.9 + 2.1 * len(LENGTH_PANELS)),
            squeeze=False,
            constrained_layout=True,
        )
        for c, regime in enumerate(regimes):
            for r, (column, title, unit) in enumerate(LENGTH_PANELS):
                ax = axes[r, c]
                for architecture in architectures:
                    colour = architecture_colour(architecture)
                    for index, (lr, batch, auxk) in enumerate(settings[architecture]):
                        rows = frame[
                            (frame["regime"] == regime) & (frame["architecture"] == architecture)
                        ]
                        if lr is not None:
                            rows = rows[
                                np.isclose(rows["cfg_lr"].astype(float), lr)
                                & (rows["cfg_batch_size"].astype(int) == batch)
                                & (_auxk_values(rows) == auxk)
                            ]
                        if rows.empty:
                            continue
                        stats = rows.groupby("samples_seen")[column].agg(["mean", "min", "max"])
                        x = stats.index.to_numpy(dtype=float) / 1e6
                        ax.plot(
                            x, stats["mean"], color=colour, markersize=3.5, linewidth=1.4,
                            marker=architecture_marker(architecture),
                            linestyle=SETTING_LINESTYLES[index % len(SETTING_LINESTYLES)],
                        )  # fmt: skip
                        if rows["seed"].nunique() > 1:
                            ax.fill_between(x, stats["min"], stats["max"], color=colour, alpha=0.2)
                        # Early stops off the doubling grid: hollow marker at the final point.
                        early = rows[
                            rows["final"].astype(bool) & (rows["stop_reason"] == "plateau")
                        ]
                        if not early.empty:
                            ax.scatter(
                                early["samples_seen"] / 1e6, early[column], s=30,
                                facecolors="white", edgecolors=colour, zorder=3,
                            )  # fmt: skip
                ax.set_xscale("log", base=2)
                _ticks_at(ax, frame["samples_seen"] / 1e6)
                ax.set_xlabel("samples seen (millions, log scale)")
                ax.set_ylabel(unit.format(threshold=recovery_threshold))
                ax.set_title(f"{regime}: {title}", loc="left")
        handles: list = []
        for a in architectures:
            for index, (lr, batch, auxk) in enumerate(settings[a]):
                label = a if not several or lr is None else _setting_label(a, lr, batch, auxk)
                handles.append(
                    Line2D(
                        [],
                        [],
                        color=architecture_colour(a),
                        marker=architecture_marker(a),
                        markersize=4,
                        label=label,
                        linestyle=SETTING_LINESTYLES[index % len(SETTING_LINESTYLES)],
                    )  # fmt: skip
                )
        if frame["seed"].nunique() > 1:
            handles.append(Patch(color="grey", alpha=0.3, label="min-max over seeds"))
        if (frame["stop_reason"] == "plateau").any():
            handles.append(
                Line2D(
                    [],
                    [],
                    color="black",
                    marker="o",
                    markerfacecolor="white",
                    linestyle="",
                    label="stopped by plateau rule",
                )  # fmt: skip
            )
        shared_legend(fig, handles, max_columns=4)
        save_figure(fig, out_path)


def figure_length_sensitivity(
    table: pd.DataFrame, out_path: str | Path, recovery_threshold: float
) -> None:
    """Final-point metrics against the learning rate (at the default batch size) and
    against the batch size (at the default lr), one line per (architecture, regime)."""
    who = "figure_length_sensitivity"
    metrics = ["recovered_fraction", "explained_variance"]
    needed = ["regime", "architecture", "cfg_lr", "cfg_batch_size"]
    require_columns(table, needed + [f"{m}_mean" for m in metrics], who, "sensitivity table")
    if table.empty:
        raise ValueError(f"{who}: sensitivity table has no rows")
    regimes = in_order(table["regime"], ("constant", "variable"))
    architectures = in_order(table["architecture"], ARCHITECTURE_ORDER)
    styles = ["-", "--", ":", "-."]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            len(metrics), 2, figsize=(7.0, 1.0 + 2.2 * len(metrics)), squeeze=False,
            constrained_layout=True,
        )  # fmt: skip
        for architecture in architectures:
            for i, regime in enumerate(regimes):
                rows = table[(table["architecture"] == architecture) & (table["regime"] == regime)]
                if rows.empty:
                    continue
                # The default of each factor is the value shared by the most runs.
                default_bs = rows["cfg_batch_size"].mode().iloc[0]
                default_lr = rows["cfg_lr"].mode().iloc[0]
                by_lr = rows[rows["cfg_batch_size"] == default_bs].sort_values("cfg_lr")
                by_bs = rows[np.isclose(rows["cfg_lr"], default_lr)].sort_values("cfg_batch_size")
                for r, metric in enumerate(metrics):
                    for c, (part, x) in enumerate([(by_lr, "cfg_lr"), (by_bs, "cfg_batch_size")]):
                        axes[r, c].errorbar(
                            part[x], part[f"{metric}_mean"], yerr=part.get(f"{metric}_std"),
                            color=architecture_colour(architecture),
                            marker=architecture_marker(architecture), markersize=4,
                            linestyle=styles[i % len(styles)], capsize=2,
                        )  # fmt: skip
        for r, metric in enumerate(metrics):
            label = (
                f"recovered fraction (cos ≥ {recovery_threshold})"
                if metric == "recovered_fraction"
                else "explained variance"
            )
            for c, (x_label, x) in enumerate(
                [("learning rate", "cfg_lr"), ("batch size", "cfg_batch_size")]
            ):
                ax = axes[r, c]
                ax.set_xscale("log")
                _ticks_at(ax, table[x])
                ax.set_xlabel(x_label)
                ax.set_ylabel(label)
                ax.set_title(f"{label.split(' (')[0]} vs {x_label}", loc="left")
        handles: list = [
            Line2D([], [], color=architecture_colour(a), marker=architecture_marker(a), label=a)
            for a in architectures
        ]
        handles += [
            Line2D([], [], color="black", linestyle=styles[i % len(styles)], label=regime)
            for i, regime in enumerate(regimes)
        ]
        shared_legend(fig, handles, max_columns=5)
        save_figure(fig, out_path)


# (column, column title) of the sweep figure
SWEEP_PANELS = [
    ("recovered_count", "recovered (max cos ≥ {threshold})"),
    ("mcc", "MCC (Hungarian-matched)"),
    ("explained_variance", "explained variance (held out)"),
    ("dead_fraction", "dead fraction (held out)"),
]
# Early points can have a very negative EV; the axis stops here (the CSV has the values).
SWEEP_EV_FLOOR = -0.25


def _nominal_ticks(ax, samples: pd.Series) -> None:
    """Ticks at the doublings in millions, two significant digits: points within 5%
    of each other (a batch size's rounding: 126,976 and 128,000) share one tick."""
    ticks: list[float] = []
    for value in np.unique(samples.to_numpy(dtype=float)) / 1e6:
        if not ticks or value > ticks[-1] * 1.05:
            ticks.append(value)
    ax.set_xticks(ticks, [f"{tick:.2g}" for tick in ticks])
    ax.xaxis.set_minor_locator(plt.NullLocator())


def figure_length_sweep(
    frame: pd.DataFrame, out_path: str | Path, recovery_threshold: float
) -> None:
    """The coarse sweep: each metric against samples seen (log x), one line per learning
    rate (mean over seeds), one row of panels per (architecture, batch size). Explained
    variance below SWEEP_EV_FLOOR is cut off; the dotted line marks half the latents dead."""
    who = "figure_length_sweep"
    columns = ["architecture", "cfg_lr", "cfg_batch_size", "seed", "samples_seen"]
    require_columns(frame, columns + [p[0] for p in SWEEP_PANELS], who, "sweep table")
    if frame.empty:
        raise ValueError(f"{who}: sweep table has no rows")
    architectures = in_order(frame["architecture"], ARCHITECTURE_ORDER)
    batch_sizes = sorted(frame["cfg_batch_size"].unique())
    lrs = sorted(frame["cfg_lr"].unique())
    cmap = plt.get_cmap("viridis")
    colours = {lr: cmap(i / max(1, len(lrs) - 1) * 0.9) for i, lr in enumerate(lrs)}
    rows = [(a, b) for a in architectures for b in batch_sizes]
    regimes = ", ".join(sorted(frame["regime"].unique())) if "regime" in frame else ""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            len(rows), len(SWEEP_PANELS), figsize=(2.5 * len(SWEEP_PANELS), 0.9 + 1.7 * len(rows)),
            squeeze=False, constrained_layout=True,
        )  # fmt: skip
        for r, (architecture, batch_size) in enumerate(rows):
            part = frame[
                (frame["architecture"] == architecture) & (frame["cfg_batch_size"] == batch_size)
            ]
            for c, (column, title) in enumerate(SWEEP_PANELS):
                ax = axes[r, c]
                for lr in lrs:
                    curve = part[np.isclose(part["cfg_lr"], lr)]
                    if curve.empty:
                        continue
                    means = curve.groupby("samples_seen")[column].mean()
                    ax.plot(
                        means.index.to_numpy(dtype=float) / 1e6, means.to_numpy(),
                        color=colours[lr], marker="o", markersize=2.5, linewidth=1.2,
                    )  # fmt: skip
                ax.set_xscale("log", base=2)
                _nominal_ticks(ax, frame["samples_seen"])
                if column == "dead_fraction":
                    ax.axhline(0.5, color="grey", linewidth=0.6, linestyle=":")
                    ax.set_ylim(-0.03, 1.03)
                elif column == "recovered_count":
                    top = float(part[column].max()) if not part.empty else 0.0
                    ax.set_ylim(-0.5, max(1.0, top) * 1.08 + 0.5)
                    ax.yaxis.set_major_locator(plt.MaxNLocator(integer=True))
                elif column == "explained_variance" and not part.empty:
                    low = max(SWEEP_EV_FLOOR, float(part[column].min()))
                    ax.set_ylim(low - 0.03, max(low, float(part[column].max())) + 0.03)
                if r == 0:
                    ax.set_title(title.format(threshold=recovery_threshold), loc="left")
                if r == len(rows) - 1:
                    ax.set_xlabel("samples seen (millions, log)")
                if c == 0:
                    ax.set_ylabel(f"{architecture}\nbatch {batch_size}")
        handles = [
            Line2D([], [], color=colours[lr], marker="o", markersize=3, label=f"lr {lr:g}")
            for lr in lrs
        ]
        shared_legend(fig, handles, max_columns=len(handles))
        if regimes:
            fig.suptitle(f"learning rate x batch size ({regimes} regime)")
        save_figure(fig, out_path)
