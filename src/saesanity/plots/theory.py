"""The theory check's figure: the study's cap bound against the exact probability and a
Monte Carlo estimate (saesanity.studies.theory).

Two panels, both with a logarithmic probability axis:
- "Monte Carlo check": the points where the probability was measured; the estimate with
  its 95% Wilson interval must sit at or below the bound;
- "below the Monte Carlo budget": the study's and this project's scales, where the
  probability is far too small to measure (down to 1e-500 and below, beyond float64), so
  the axis is drawn from the log10 columns.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from saesanity.plots.style import (
    REFERENCE_COLOUR,
    STYLE,
    require_columns,
    save_figure,
    shared_legend,
)
from saesanity.studies.theory import STATUS_NOT_ESTIMABLE

BOUND_STYLE = dict(color=REFERENCE_COLOUR, marker="v", markersize=6, linestyle="none")
EXACT_STYLE = dict(
    color="#1A1A1A", marker="_", markersize=14, markeredgewidth=1.6, linestyle="none"
)
ESTIMATE_COLOUR = "#0072B2"  # Okabe-Ito blue

_REQUIRED = (
    "label",
    "n",
    "m",
    "tau",
    "log10_bound",
    "log10_exact",
    "estimate",
    "ci_low",
    "ci_high",
    "status",
    "samples",
)


def _tick_label(row: pd.Series) -> str:
    numbers = f"n={int(row['n'])}\nm={int(row['m'])}\nτ={float(row['tau']):g}"
    label = str(row["label"])
    # Auto-generated labels repeat the numbers; named points say what they are first.
    if label.startswith("n="):
        return numbers
    return label.replace(", ", "\n") + "\n" + numbers


def _power_of_ten(value: float, _position: int) -> str:
    return f"$10^{{{int(round(value))}}}$"


def _measured_panel(ax: Axes, rows: pd.DataFrame) -> None:
    x = np.arange(len(rows))
    ax.set_yscale("log")
    ax.plot(x, 10.0 ** rows["log10_bound"], gid="bound", **BOUND_STYLE)
    ax.plot(x, 10.0 ** rows["log10_exact"], gid="exact", **EXACT_STYLE)
    hit = rows["estimate"].notna().to_numpy()
    estimate = rows["estimate"].to_numpy(dtype=float)
    low = rows["ci_low"].to_numpy(dtype=float)
    high = rows["ci_high"].to_numpy(dtype=float)
    if hit.any():
        ax.errorbar(
            x[hit],
            estimate[hit],
            yerr=[estimate[hit] - low[hit], high[hit] - estimate[hit]],
            fmt="o",
            color=ESTIMATE_COLOUR,
            markersize=4,
            capsize=3,
            elinewidth=1.0,
            gid="estimate",
        )
    if (~hit).any():
        # No target hit: only the interval's upper end is a measurement.
        ax.plot(
            x[~hit],
            high[~hit],
            gid="upper_limit",
            color=ESTIMATE_COLOUR,
            marker="v",
            markerfacecolor="white",
            linestyle="none",
        )
    ax.axhline(1.0, color=REFERENCE_COLOUR, linestyle=":", linewidth=1.0)
    ax.set_xticks(x, [_tick_label(row) for _, row in rows.iterrows()])
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylabel("P(a fixed direction lies in some cap)")
    ax.set_title(f"Monte Carlo check ({int(rows['samples'].iloc[0]):,} targets per point)")


def _log10_panel(ax: Axes, rows: pd.DataFrame) -> None:
    # Values down to 1e-500 do not fit a float64 log axis: plot log10 on a linear axis
    # with 10^k tick labels, which reads the same.
    x = np.arange(len(rows))
    ax.plot(x, rows["log10_bound"], gid="bound", **BOUND_STYLE)
    ax.plot(x, rows["log10_exact"], gid="exact", **EXACT_STYLE)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(_power_of_ten))
    ax.set_xticks(x, [_tick_label(row) for _, row in rows.iterrows()])
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_title("Below the Monte Carlo budget (not estimable)")


def figure_cap_bound(table: pd.DataFrame, out_path: str | Path) -> Figure:
    """Bound, exact probability and Monte Carlo estimate per point of `table`
    (saesanity.studies.theory.cap_bound_table), on logarithmic probability axes: one
    panel for the measured points, one for those below the Monte Carlo budget (each
    left out when it has no point)."""
    who = "figure_cap_bound"
    require_columns(table, _REQUIRED, who, "table")
    if table.empty:
        raise ValueError(f"{who}: table has no rows")
    skipped = table["status"] == STATUS_NOT_ESTIMABLE
    panels = [
        (rows, draw)
        for rows, draw in ((table[~skipped], _measured_panel), (table[skipped], _log10_panel))
        if len(rows)
    ]

    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            1,
            len(panels),
            figsize=(max(5.0, 1.0 + 1.15 * len(table)), 4.0),
            width_ratios=[len(rows) for rows, _ in panels],
            squeeze=False,
            constrained_layout=True,
        )
        for ax, (rows, draw) in zip(axes[0], panels, strict=True):
            draw(ax, rows.reset_index(drop=True))
            ax.tick_params(axis="x", labelsize=7)
            ax.grid(axis="x", visible=False)
        handles = [
            Line2D([], [], label="bound m·exp(−nτ²/2)", **BOUND_STYLE),
            Line2D([], [], label="exact 1 − (1 − p_cap)^m", **EXACT_STYLE),
        ]
        if (~skipped).any():
            handles.append(
                Line2D(
                    [],
                    [],
                    color=ESTIMATE_COLOUR,
                    marker="o",
                    markersize=4,
                    label="Monte Carlo, 95% Wilson interval",
                )
            )
        shared_legend(fig, handles, max_columns=3)
        fig.suptitle("Random caps of cosine τ around m directions in Rⁿ")
        save_figure(fig, out_path)
    return fig
