"""AutoInterp figures: per-latent score distributions (the study's AutoInterp figure)
and a page of the best latents of each random baseline with their marked contexts
(the study's Figure 6). Styles follow real_plots (variant colours, series labels)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from saesanity.core.checkpoint import atomic_write
from saesanity.plots.real import (
    figure_width,
    legend_columns,
    series_handle,
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
from saesanity.studies.runs import real_run_from_path


def figure_autointerp(scores: pd.DataFrame, out_path: str | Path, judge: str = "") -> Figure:
    """Detection accuracy per latent: one panel per architecture, one violin per
    (variant, init) with every latent as a dot and the mean as a bar; 0.5 = chance."""
    require_columns(scores, ["architecture", "variant", "init", "accuracy"], "autointerp", "scores")
    if scores.empty:
        raise ValueError("figure_autointerp: no latent scores")
    architectures = in_order(scores["architecture"], ARCHITECTURE_ORDER)
    drawn: set[tuple[str, str]] = set()
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            1,
            len(architectures),
            figsize=(figure_width(len(architectures)), 3.2),
            sharey=True,
            squeeze=False,
            constrained_layout=True,
        )
        row = list(axes[0])
        for ax, architecture in zip(row, architectures, strict=True):
            panel = scores[scores["architecture"] == architecture]
            pairs = sorted(
                set(zip(panel["variant"], panel["init"], strict=True)),
                key=lambda pair: series_key(*pair),
            )
            for position, (variant, init) in enumerate(pairs):
                values = panel[(panel["variant"] == variant) & (panel["init"] == init)]
                values = values["accuracy"].dropna().to_numpy(dtype=float)
                colour = variant_colour(variant)
                if len(values) > 1 and np.ptp(values) > 0:
                    parts = ax.violinplot(values, [position], widths=0.8, showextrema=False)
                    for body in parts["bodies"]:
                        body.set_facecolor(colour)
                        body.set_edgecolor(colour)
                        body.set_alpha(0.3 if init != "cov" else 0.15)
                jitter = np.random.default_rng(position).uniform(-0.12, 0.12, len(values))
                ax.scatter(
                    position + jitter,
                    values,
                    s=9,
                    color=colour,
                    facecolor=colour if init != "cov" else "white",
                    zorder=3,
                )
                if len(values):
                    ax.hlines(values.mean(), position - 0.3, position + 0.3, color=colour, lw=2)
                drawn.add((variant, init))
            ax.axhline(0.5, color="#7F7F7F", linestyle=":", linewidth=1)
            ax.set_xticks(range(len(pairs)))
            ax.set_xticklabels(
                [series_label(*pair) for pair in pairs], fontsize=6, rotation=30, ha="right"
            )
            ax.set_title(architecture)
            ax.set_ylim(-0.02, 1.02)
        row[0].set_ylabel("detection accuracy per latent")
        handles = [series_handle(*pair) for pair in sorted(drawn, key=lambda p: series_key(*p))]
        shared_legend(fig, handles, max_columns=legend_columns(fig))
        latents = scores.groupby(["architecture", "variant", "init"]).size()
        counts = sorted({int(latents.min()), int(latents.max())})
        title = f"AutoInterp detection accuracy ({'-'.join(map(str, counts))} latents per "
        title += "checkpoint; dotted: chance)"
        fig.suptitle(f"{title}\n{judge}" if judge else title)
        save_figure(fig, out_path)
    return fig


def _markdown_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def write_examples(
    record_paths: list[str | Path], out_path: str | Path, judge: str, per_run: int = 3
) -> str:
    """A Markdown page: for every checkpoint, its `per_run` best-scored latents with the
    description and the marked explanation contexts (random baselines first, the
    trained SAE last for comparison)."""
    runs = []
    for path in record_paths:
        run = real_run_from_path(path)
        records = [json.loads(line) for line in Path(path).read_text().splitlines() if line]
        runs.append((run, records))
    runs.sort(key=lambda item: (item[0]["variant"] == "trained", item[0]["architecture"],
                                series_key(item[0]["variant"], item[0]["init"])))  # fmt: skip
    lines = [
        "# AutoInterp: best latents of each checkpoint",
        "",
        f"{judge}. Score = detection accuracy (calibrated: the top n_activating margins "
        "count as 'fires'); AUROC of the yes/no margin beside it. Tokens where the latent "
        "fires are marked <<like this>> in the contexts the explainer saw.",
        "",
    ]
    for run, records in runs:
        label = series_label(run["variant"], run["init"])
        lines += [f"## {run['architecture']}, {label}, L0 {run['target_l0']}, seed {run['seed']}"]
        lines += [""]
        best = sorted(records, key=lambda r: (-r["accuracy"], -np.nan_to_num(r["auroc"])))
        for record in best[:per_run]:
            lines.append(
                f"### latent {record['latent']}: accuracy {record['accuracy']:.2f}, AUROC "
                f"{record['auroc']:.2f} ({record['n_activating']} + "
                f"{record['n_non_activating']} contexts)"
            )
            lines += [
                "",
                f"**Description:** activates on {_markdown_escape(record['description'])}",
                "",
            ]
            lines += [f"    {text}" for text in record["explain_texts"][:5]]
            lines.append("")
    text = "\n".join(lines) + "\n"
    atomic_write(out_path, lambda tmp: tmp.write_text(text))
    return text
