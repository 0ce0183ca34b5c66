"""Verdict table and one-page report: does the user's SAE beat its matched random baselines?

Input is one row per evaluated checkpoint (run columns `architecture, variant, init,
target_l0, seed` plus metric columns). The user's SAE is the single row with
`variant == "user"`; every other row is a seed of a random baseline named
"<variant>/<init>" (e.g. "frozen_decoder/cov"). The verdict rule, verbatim as
`VERDICT_RULE` (the report prints it too):

For each metric, d = direction x (SAE - baseline mean), so d > 0 means the SAE is better.
The interval for d against a baseline with n seeds and seed standard deviation s
(ddof = 1) is d +/- t_{(1+c)/2, n-1} * s / sqrt(n), with t the Student t quantile and c
the confidence level. It covers only the baselines' seed-to-seed spread: the SAE is a
single checkpoint, so its own seed-to-seed spread is unknown and not in the interval.
"beats the random baselines": the interval for d against the best baseline (best mean in
the metric's direction) lies entirely above 0. "worse than the random baselines": the
interval for d against the worst baseline lies entirely below 0, i.e. the SAE is worse
than every baseline. "indistinguishable": otherwise; the SAE lands within the range the
random baselines span. A baseline with a single seed has no interval: the point
difference d decides instead and the verdict ends in "(no interval: 1 seed)".
Inequalities are strict, so a tie (d = 0 with zero spread) never counts as beating.
"""

from __future__ import annotations

import base64
import html
import io
import math
import numbers
import textwrap
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from scipy import stats

from saesanity.core.checkpoint import atomic_write
from saesanity.plots.real import series_label, variant_colour
from saesanity.studies.runs import REAL_RUN_KEYS, USER_VARIANT

# Direction (+1: higher is better, -1: lower is better) and short label of known metrics;
# sparse probing under both the study's names and this workflow's (SAEBench's) names.
_KNOWN_METRICS: dict[str, tuple[int, str]] = {
    "explained_variance": (1, "Explained variance"),
    "ce_loss_score": (1, "CE loss score"),
    "kl_div_score": (1, "KL div. score"),
    "ce_loss": (-1, "CE loss"),
    "kl_divergence": (-1, "KL divergence"),
    "sparse_probing_top1": (1, "Probe top-1"),
    "sparse_probing_top5": (1, "Probe top-5"),
    "sparse_probing_sae_test_accuracy": (1, "Probe, all latents"),
    "sae_top_1_test_accuracy": (1, "Probe top-1"),
    "sae_top_5_test_accuracy": (1, "Probe top-5"),
    "sae_test_accuracy": (1, "Probe, all latents"),
    "ravel_disentanglement": (1, "RAVEL"),
    "ravel_cause": (1, "RAVEL cause"),
    "ravel_isolation": (1, "RAVEL isolation"),
    "autointerp_score": (1, "AutoInterp"),
    "autointerp_auroc": (1, "AutoInterp AUROC"),
}
METRIC_DIRECTIONS: dict[str, int] = {m: sign for m, (sign, _) in _KNOWN_METRICS.items()}
METRIC_LABELS: dict[str, str] = {m: label for m, (_, label) in _KNOWN_METRICS.items()}

VERDICT_RULE = (
    "For each metric, d = direction x (SAE - baseline mean), so d > 0 means the SAE is "
    "better. The interval for d against a baseline with n seeds and seed standard deviation "
    "s (ddof = 1) is d +/- t_{(1+c)/2, n-1} * s / sqrt(n), with t the Student t quantile and "
    "c the confidence level. It covers only the baselines' seed-to-seed spread: the SAE is a "
    "single checkpoint, so its own seed-to-seed spread is unknown and not in the interval. "
    '"beats the random baselines": the interval for d against the best baseline (best mean '
    'in the metric\'s direction) lies entirely above 0. "worse than the random baselines": '
    "the interval for d against the worst baseline lies entirely below 0, i.e. the SAE is "
    'worse than every baseline. "indistinguishable": otherwise; the SAE lands within the '
    "range the random baselines span. A baseline with a single seed has no interval: the "
    'point difference d decides instead and the verdict ends in "(no interval: 1 seed)". '
    "Inequalities are strict, so a tie (d = 0 with zero spread) never counts as beating."
)
BEATS = "beats the random baselines"
WORSE = "worse than the random baselines"
INDISTINGUISHABLE = "indistinguishable"
NOT_EVALUATED = "not evaluated"
NO_INTERVAL = " (no interval: 1 seed)"
STATS = ("mean", "std", "seeds")
_SAE_COLOUR = "#1A1A1A"


def _baseline_name(variant: str, init: str) -> str:
    return f"{variant}/{init}"


def _split(metrics: pd.DataFrame) -> tuple[int, dict[tuple[str, str], pd.Index]]:
    """Index of the user's row, and the baseline rows' index per (variant, init), sorted.
    `metrics` must have a unique index (callers reset it)."""
    missing = [c for c in REAL_RUN_KEYS if c not in metrics.columns]
    if missing:
        raise ValueError(f"sanity report: metrics lack the run column(s) {missing}")
    is_user = metrics["variant"] == USER_VARIANT
    if is_user.sum() != 1:
        raise ValueError(
            f"sanity report: expected exactly one row with variant == {USER_VARIANT!r} "
            f"(the user's SAE), found {int(is_user.sum())}"
        )
    baselines = metrics[~is_user]
    if baselines.empty:
        raise ValueError("sanity report: no baseline rows (variant != 'user')")
    if baselines[["variant", "init"]].isna().any(axis=None):
        raise ValueError("sanity report: baseline rows with a missing variant or init")
    run = ["variant", "init", "seed"]
    repeated = baselines.loc[baselines.duplicated(run), run].drop_duplicates()
    if not repeated.empty:
        runs = list(repeated.itertuples(index=False, name=None))
        raise ValueError(
            f"sanity report: several rows for baseline run(s) {runs}; select one "
            "architecture and target_l0 before comparing"
        )
    groups = baselines.groupby(["variant", "init"]).groups
    return int(metrics.index[is_user.to_numpy()][0]), dict(sorted(groups.items()))


def _directions(columns: list[str], directions: dict[str, int] | None) -> dict[str, int]:
    known = {**METRIC_DIRECTIONS, **(directions or {})}
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise ValueError(
            f"sanity_verdicts: no direction known for metric(s) {unknown}; pass "
            "directions={name: +1 (higher is better) or -1 (lower is better)}"
        )
    invalid = {c: known[c] for c in columns if known[c] not in (1, -1)}
    if invalid:
        raise ValueError(f"sanity_verdicts: directions must be +1 or -1, got {invalid}")
    return {c: known[c] for c in columns}


class _Difference(NamedTuple):
    """d = direction x (SAE - baseline mean) and its interval (NaN with one seed)."""

    baseline: str
    d: float
    low: float
    high: float
    seeds: int


def _difference(row: dict, name: str, confidence: float) -> _Difference:
    d = row["direction"] * (row["sae"] - row[f"{name}_mean"])
    n = row[f"{name}_seeds"]
    if n < 2:
        return _Difference(name, d, math.nan, math.nan, n)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * row[f"{name}_std"] / math.sqrt(n)
    return _Difference(name, d, d - half, d + half, n)


def _verdict(best: _Difference, worst: _Difference) -> str:
    """`VERDICT_RULE`; a one-seed baseline's point difference stands in for its bound."""
    if (best.low if best.seeds > 1 else best.d) > 0:
        verdict, used = BEATS, [best]
    elif (worst.high if worst.seeds > 1 else worst.d) < 0:
        verdict, used = WORSE, [worst]
    else:
        verdict, used = INDISTINGUISHABLE, [best, worst]
    return verdict + (NO_INTERVAL if any(side.seeds < 2 for side in used) else "")


def sanity_verdicts(
    metrics: pd.DataFrame,
    columns: list[str],
    confidence: float = 0.95,
    directions: dict[str, int] | None = None,
) -> pd.DataFrame:
    """One row per metric of `columns` present in `metrics`: the SAE value, each baseline's
    seed mean, std and seed count, the difference (SAE better > 0) and interval against the
    best and the worst baseline, and the verdict of `VERDICT_RULE`. A metric the user's SAE
    lacks (NaN) keeps its baseline numbers and the verdict "not evaluated"."""
    if not 0 < confidence < 1:
        raise ValueError(f"sanity_verdicts: confidence must lie in (0, 1), got {confidence}")
    signs = _directions(columns, directions)
    metrics = metrics.reset_index(drop=True)
    user, groups = _split(metrics)
    names = [_baseline_name(*key) for key in groups]
    rows = []
    for metric in (c for c in columns if c in metrics.columns):
        values = metrics[metric].astype(float)
        label, sae = METRIC_LABELS.get(metric, metric), float(values[user])
        row = {"metric": metric, "label": label, "direction": signs[metric], "sae": sae}
        for name, index in zip(names, groups.values(), strict=True):
            seeds = values[index].dropna()
            row.update({f"{name}_mean": seeds.mean(), f"{name}_std": seeds.std()})
            row[f"{name}_seeds"] = len(seeds)
        scored = [name for name in names if row[f"{name}_seeds"] > 0]
        if math.isnan(sae) or not scored:
            row["verdict"] = NOT_EVALUATED + ("" if scored else " (no baseline values)")
            rows.append(row)
            continue
        ranked = sorted(scored, key=lambda b: row["direction"] * row[f"{b}_mean"])
        best = _difference(row, ranked[-1], confidence)
        worst = _difference(row, ranked[0], confidence)
        row.update(best_baseline=best.baseline, diff_to_best=best.d)
        row.update(ci_low=best.low, ci_high=best.high, worst_baseline=worst.baseline)
        row.update(diff_to_worst=worst.d, worst_ci_low=worst.low, worst_ci_high=worst.high)
        row["verdict"] = _verdict(best, worst)
        rows.append(row)
    header = ["metric", "label", "direction", "sae"]
    header += [f"{name}_{stat}" for name in names for stat in STATS]
    header += ["best_baseline", "diff_to_best", "ci_low", "ci_high", "worst_baseline"]
    header += ["diff_to_worst", "worst_ci_low", "worst_ci_high", "confidence", "verdict"]
    table = pd.DataFrame(rows, columns=header)
    table["confidence"] = confidence
    return table


def _bar_panel(
    ax: Axes, row: pd.Series, metrics: pd.DataFrame, groups: dict[tuple[str, str], pd.Index]
) -> None:
    """SAE bar, one bar per baseline mean with seed-std error bars, seeds as dots."""
    ax.bar(0, row["sae"], color=_SAE_COLOUR, width=0.7)
    ax.axhline(row["sae"], color=_SAE_COLOUR, linewidth=0.8, linestyle=":")
    shown = [row["sae"]]
    for x, ((variant, init), index) in enumerate(groups.items(), start=1):
        name, colour = _baseline_name(variant, init), variant_colour(variant)
        mean, std = row[f"{name}_mean"], np.nan_to_num(row[f"{name}_std"])
        hollow = init == "cov"  # as in the study's figures: cov hollow (hatched), iso filled
        face, hatch = ("white", "///") if hollow else (colour, None)
        ax.bar(x, mean, width=0.7, color=face, edgecolor=colour, hatch=hatch)
        ax.errorbar(x, mean, yerr=std, color="black", capsize=3, linewidth=1)
        seeds = metrics.loc[index, row["metric"]].astype(float).dropna().to_numpy()
        offsets = np.linspace(-0.18, 0.18, len(seeds)) if len(seeds) > 1 else np.zeros(1)
        ax.scatter(x + offsets[: len(seeds)], seeds, s=9, color="black", zorder=3)
        shown += [*seeds, mean - std, mean + std]
    low, high = np.nanmin(shown), np.nanmax(shown)
    pad = 0.15 * (high - low) or 0.05 * abs(high) or 0.05
    ax.set_ylim(low - pad, high + pad)  # zoomed: the differences are what matters here
    labels = ["SAE", *(series_label(*key) for key in groups)]
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=7)
    better = "higher" if row["direction"] > 0 else "lower"
    ax.set_title(f"{row['label']} ({better} is better)\n{row['verdict']}", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)


def summary_figure(
    table: pd.DataFrame, metrics: pd.DataFrame, path_or_none: str | Path | None = None
) -> Figure:
    """One bar panel per evaluated metric of `table` (SAE, baseline means +/- seed std,
    seeds as dots, verdict as subtitle). Saved atomically if a path is given (format from
    its suffix)."""
    metrics = metrics.reset_index(drop=True)
    _, groups = _split(metrics)
    shown = table[~table["verdict"].str.startswith(NOT_EVALUATED)]
    ncols = min(max(len(shown), 1), 3)
    nrows = max(math.ceil(len(shown) / ncols), 1)
    fig = Figure(figsize=(3.4 * ncols, 3.3 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (_, row) in zip(axes, shown.iterrows(), strict=False):
        _bar_panel(ax, row, metrics, groups)
    for ax in axes[len(shown) :]:
        ax.axis("off")
    if shown.empty:
        axes[0].text(0.5, 0.5, "no metric evaluated", ha="center", va="center")
    if path_or_none is not None:
        suffix = Path(path_or_none).suffix.lstrip(".") or "png"
        atomic_write(path_or_none, lambda tmp: fig.savefig(tmp, format=suffix))
    return fig


def _fmt(value: float, digits: int = 4) -> str:
    finite = isinstance(value, numbers.Real) and math.isfinite(value)
    return f"{value:.{digits}g}" if finite else "–"


def _mean_std(mean: float, std: float, seeds: int) -> str:
    return f"{_fmt(mean)} ± {_fmt(std, 2)} ({seeds})" if seeds > 0 else "–"


def _display_table(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and text cells of the compact verdict table shown in the HTML and the PDF."""
    names = [c.removesuffix("_mean") for c in table.columns if c.endswith("_mean")]
    header = ["Metric", "SAE", *names, "SAE vs best [CI]", "Verdict"]
    cells = []
    for _, row in table.iterrows():
        baselines = [_mean_std(*(row[f"{b}_{stat}"] for stat in STATS)) for b in names]
        diff = _fmt(row["diff_to_best"])
        if math.isfinite(row["ci_low"]):
            diff += f" [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
        cells.append([row["label"], _fmt(row["sae"]), *baselines, diff, row["verdict"]])
    return header, cells


def _notes(table: pd.DataFrame, notes: list[str]) -> list[str]:
    if table.empty:
        return list(notes)
    return [*notes, f"Intervals at {_fmt(100 * table['confidence'].iloc[0])}% confidence."]


def _html(table: pd.DataFrame, title: str, notes: list[str], png: bytes) -> str:
    header, cells = _display_table(table)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in cells
    )
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:1.5em auto;font-size:14px}"
        "table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #bbb;"
        "padding:2px 6px}td{text-align:right}td:first-child,td:last-child{text-align:left}"
        "img{max-width:100%}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{style}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n<ul>"
        + "".join(f"<li>{html.escape(note)}</li>" for note in _notes(table, notes))
        + f"</ul>\n<p><b>Verdict rule.</b> {html.escape(VERDICT_RULE)}</p>\n"
        f'<img alt="summary figure" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode("ascii")}">\n'
        f"<table><tr>{head}</tr>{body}</table>\n</body></html>\n"
    )


def _text_page(table: pd.DataFrame, title: str, notes: list[str]) -> Figure:
    """A4 landscape page: title, notes, rule and the compact verdict table."""
    fig = Figure(figsize=(11.69, 8.27))
    lines = [f"• {note}" for note in _notes(table, notes)]
    lines = [line for text in lines for line in textwrap.wrap(text, 160)]
    lines += ["", *textwrap.wrap(f"Verdict rule. {VERDICT_RULE}", 170)]
    fig.text(0.04, 0.95, title, fontsize=13, weight="bold", va="top")
    fig.text(0.04, 0.9, "\n".join(lines), fontsize=7.5, va="top", linespacing=1.4)
    top = 0.88 - len(lines) * 7.5 * 1.4 / 72 / 8.27
    ax = fig.add_axes((0.03, 0.03, 0.94, max(top - 0.05, 0.1)))
    ax.axis("off")
    header, cells = _display_table(table)
    if cells:
        columns = zip(header, *cells, strict=True)
        chars = [max(len(str(c)) for c in column) + 5 for column in columns]
        widths = [n / sum(chars) for n in chars]
        grid = ax.table(
            cellText=cells, colLabels=header, colWidths=widths, loc="upper center", cellLoc="center"
        )
        grid.auto_set_font_size(False)
        grid.set_fontsize(6.5)
    return fig


def write_sanity_report(
    table: pd.DataFrame,
    metrics: pd.DataFrame,
    out_csv: str | Path,
    out_html: str | Path,
    out_pdf: str | Path,
    title: str,
    notes: list[str],
) -> None:
    """The verdict table as CSV, and the same report (notes, rule, figure, verdicts) as a
    self-contained HTML page and a two-page PDF; every file is written atomically."""
    figure = summary_figure(table, metrics)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    page = _html(table, title, notes, buffer.getvalue())
    figure.suptitle(title, fontsize=11)

    def write_pdf(tmp: Path) -> None:
        with PdfPages(tmp, metadata={"CreationDate": None}) as pdf:
            pdf.savefig(figure)
            pdf.savefig(_text_page(table, title, notes))

    atomic_write(out_csv, lambda tmp: table.to_csv(tmp, index=False))
    atomic_write(out_html, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    atomic_write(out_pdf, write_pdf)
