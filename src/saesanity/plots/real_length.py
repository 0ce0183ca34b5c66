"""Figure of the training-length study on real activations (studies/real_length.py)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.lines import Line2D

from saesanity.plots.real import (
    METRIC_AXIS_LABELS,
    METRIC_LABELS,
    _series_style,
    series_key,
    series_label,
)
from saesanity.plots.style import (
    ARCHITECTURE_ORDER,
    REFERENCE_COLOUR,
    STYLE,
    add_note,
    architecture_colour,
    architecture_marker,
    in_order,
    require_columns,
    save_figure,
    shared_legend,
)

# Second row: what each variant reaches, and how far the trained decoder moved.
DETAIL_PANELS = [
    ("explained_variance", "held-out EV (dotted: on training tokens)"),
    ("l0", "L0 (measured, held out)"),
    ("decoder_median_cosine_to_init", "decoder: median cos(d, d_init)"),
    ("decoder_fraction_outside_cap", "decoder: fraction of rows with cos < 0.8"),
]


def _steps_axis(ax, steps: pd.Series) -> None:
    ax.set_xscale("log", base=2)
    ticks = sorted(set(int(s) for s in steps))
    ax.set_xticks(ticks, [f"{tick:,d}" for tick in ticks], rotation=45)
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel("optimiser steps")


def settle_note(gaps: pd.DataFrame, tolerance_text: str = "0.01", seeds: bool = True) -> str:
    """Which gaps have stopped changing (the rule: every later doubling moves them by
    less than the tolerance) and which have not, per architecture and metric; with
    `seeds`, how many seeds the gaps rest on."""
    settled, open_ = [], []
    for (architecture, metric), rows in gaps.groupby(["architecture", "metric"], sort=True):
        name = f"{architecture} {METRIC_LABELS.get(metric, metric)}"
        start = rows["gap_settled_from_steps"].dropna()
        if len(start):
            settled.append(f"{name} (from {int(start.iloc[0]):,d} steps)")
        else:
            open_.append(name)
    parts = []
    if open_:
        parts.append(
            f"Gap NOT settled (the last doubling still moves it by >= {tolerance_text}): "
            + ", ".join(open_)
            + "."
        )
    if settled:
        parts.append(f"Gap settled (later doublings move it < {tolerance_text}): "
                     + ", ".join(settled) + ".")  # fmt: skip
    if seeds:
        count = gaps.groupby("architecture")["seed"].nunique().max() if len(gaps) else 0
        parts.append(f"{count} seed(s); no interval." if count < 2 else f"{count} seeds.")
    return " ".join(parts)


def training_length_note(
    metrics: pd.DataFrame,
    gaps: pd.DataFrame | None,
    study_batch_size: int | None = None,
    metric_names: tuple[str, ...] = ("explained_variance", "ce_loss_score"),
    study_steps: list[int] | None = None,
    study_l0: int | None = None,
) -> str:
    """The note above table 1 and the reconstruction figure: how long their runs trained
    (`metrics`: those runs, with `steps`, `samples_seen` and `seed`), and what the
    training-length study (`gaps`, its gap table, at batch `study_batch_size`; None when
    the study is off) found about the gap at the lengths it measured, per architecture
    and metric. With the study off, `study_steps` (the lengths it would measure) says
    whether the runs' length is one of them. Runs at an L0 other than the study's
    (`study_l0`) are named: the study says nothing direct about them."""
    require_columns(metrics, ["steps", "samples_seen", "seed"], "training_length_note", "metrics")
    steps = sorted({int(s) for s in metrics["steps"]})
    samples = sorted({int(s) for s in metrics["samples_seen"]})
    seeds = metrics["seed"].nunique()
    step_text = f"{steps[0]:,d}" if len(steps) == 1 else f"{steps[0]:,d}-{steps[-1]:,d}"
    sample_text = _millions(samples[0]) + (
        "" if len(samples) == 1 else f"-{_millions(samples[-1])}"
    )
    parts = [
        f"Runs trained {step_text} steps ({sample_text} samples); "
        + (f"{seeds} seed, no interval." if seeds < 2 else f"{seeds} seeds.")
    ]
    if study_l0 is not None and "target_l0" in metrics.columns:
        others = sorted({int(l0) for l0 in metrics["target_l0"]} - {int(study_l0)})
        if others:
            parts.append(
                f"The training-length study runs at L0 {int(study_l0)} only; at L0 "
                + ", ".join(str(l0) for l0 in others)
                + " the same length is assumed, not measured."
            )
    if gaps is None or gaps.empty:
        batches = set((metrics["samples_seen"] // metrics["steps"]).astype(int))
        measured = (
            study_steps is not None
            and batches == {study_batch_size}
            and set(steps) <= {int(point) for point in study_steps}
        )
        parts.append(
            "The training-length study (config/real_length.yaml, docs/real.md) measures "
            "whether the gap to the random baselines has stopped changing at this length; "
            "this run does not re-check it. The default's length follows the study's rule "
            "on EV, CE and KL scores; its probe gaps and the decoders' drift are not part "
            "of that rule."
            if measured
            else "Whether the gap to the random baselines has stopped changing at this "
            "length is not checked: the training-length study (config/real_length.yaml) "
            "measures other lengths."
        )
        return " ".join(parts)
    first, last = int(gaps["steps"].min()), int(gaps["steps"].max())
    findings = []
    for (architecture, metric), rows in gaps.groupby(["architecture", "metric"], sort=True):
        if metric not in metric_names:
            continue
        rows = rows[rows["seed"] == rows["seed"].min()].sort_values("steps")
        start = rows["gap_settled_from_steps"].dropna()
        state = (
            f"settled from {int(start.iloc[0]):,d} steps"
            if len(start)
            else f"not settled by {last:,d} steps"
        )
        findings.append(
            f"{architecture} {METRIC_LABELS.get(metric, metric)} gap "
            f"{rows['gap'].iloc[0]:+.3f} at {first:,d} steps, {rows['gap'].iloc[-1]:+.3f} "
            f"at {last:,d} ({state})"
        )
    batch = f", batch {study_batch_size:,d}" if study_batch_size else ""
    parts.append(
        f"Training-length study (trained minus best baseline, same L0{batch}): "
        + "; ".join(findings)
        + "."
    )
    # The other metrics shown (KL, the probes) have gaps in the study too: whether they
    # settled belongs next to the numbers they qualify.
    others = gaps[~gaps["metric"].isin(metric_names)]
    if len(others):
        parts.append("Other metrics: " + settle_note(others, seeds=False))
    parts.append("The decoders' drift from their initialisation is not part of the rule.")
    return " ".join(parts)


def _millions(samples: int) -> str:
    return f"{samples / 1e6:.2f}M"


def figure_real_length(points: pd.DataFrame, gaps: pd.DataFrame, out_path: str | Path) -> None:
    """Top row: the gap "trained minus the best random baseline" per metric against
    optimiser steps (log 2 x), one line per architecture (seed 0 when there are
    several; the gap table keeps every seed). Bottom row, per architecture line style:
    held-out EV of every variant (dotted: on training tokens), L0, and the trained
    decoder's drift from its initialisation."""
    require_columns(gaps, ["architecture", "seed", "metric", "steps", "gap"], "figure", "gaps")
    require_columns(
        points, ["architecture", "variant", "init", "seed", "steps"], "figure", "points"
    )
    metrics = list(dict.fromkeys(gaps["metric"]))
    architectures = in_order(points["architecture"], ARCHITECTURE_ORDER)
    columns = max(len(metrics), len(DETAIL_PANELS))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            2, columns, figsize=(2.3 * columns, 5.4), layout="constrained", squeeze=False
        )
        seed = int(points["seed"].min())
        for ax, metric in zip(axes[0], metrics, strict=False):
            rows = gaps[(gaps["metric"] == metric) & (gaps["seed"] == seed)]
            for architecture in architectures:
                curve = rows[rows["architecture"] == architecture].sort_values("steps")
                ax.plot(
                    curve["steps"], curve["gap"],
                    color=architecture_colour(architecture),
                    marker=architecture_marker(architecture), markersize=4,
                )  # fmt: skip
            ax.axhline(0.0, color=REFERENCE_COLOUR, linewidth=0.7)
            ax.set_title(f"gap: {METRIC_LABELS.get(metric, metric)}")
            ax.set_ylabel("trained − best baseline")
            _steps_axis(ax, rows["steps"])
        for ax in axes[0][len(metrics) :]:
            ax.set_visible(False)

        view = points[points["seed"] == seed]
        linestyles = ["-", "--", "-.", ":"]
        for ax, (metric, title) in zip(axes[1], DETAIL_PANELS, strict=False):
            if metric not in view:
                ax.set_visible(False)
                continue
            series = view[["variant", "init"]].drop_duplicates()
            for variant, init in sorted(
                series.itertuples(index=False), key=lambda s: series_key(*s)
            ):
                if metric.startswith("decoder_") and variant in ("frozen_decoder",):
                    continue  # a frozen decoder does not move
                for index, architecture in enumerate(architectures):
                    curve = view[
                        (view["variant"] == variant)
                        & (view["init"] == init)
                        & (view["architecture"] == architecture)
                    ].sort_values("steps")
                    style = _series_style(variant, init)
                    style["linestyle"] = linestyles[index % len(linestyles)]
                    ax.plot(curve["steps"], curve[metric], **style)
                    if metric == "explained_variance" and "train_explained_variance" in curve:
                        ax.plot(
                            curve["steps"], curve["train_explained_variance"],
                            color=style["color"], linestyle=":", linewidth=0.8,
                        )  # fmt: skip
            ax.set_title(title)
            ax.set_ylabel(METRIC_AXIS_LABELS.get(metric, metric.replace("_", " ")))
            _steps_axis(ax, view["steps"])
        for ax in axes[1][len(DETAIL_PANELS) :]:
            ax.set_visible(False)

        handles = [
            Line2D(
                [],
                [],
                color=architecture_colour(a),
                marker=architecture_marker(a),
                linestyle=linestyles[i % len(linestyles)],
                label=a,
            )  # fmt: skip
            for i, a in enumerate(architectures)
        ]
        series = points[["variant", "init"]].drop_duplicates()
        for variant, init in sorted(series.itertuples(index=False), key=lambda s: series_key(*s)):
            style = _series_style(variant, init)
            style["linestyle"] = "none"
            handles.append(Line2D([], [], label=series_label(variant, init), **style))
        shared_legend(fig, handles, max_columns=4)
        add_note(fig, settle_note(gaps))
        save_figure(fig, out_path, tight=True)
