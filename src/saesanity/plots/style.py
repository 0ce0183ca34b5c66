"""The look shared by every figure, so a reader can match them across pages.

- colour and marker encode the architecture (fixed Okabe-Ito colours, colour-blind safe);
- line style or hatch encodes the variant (trained SAE or one of the random baselines);
- the init ("iso" or "cov") is spelled out in labels, or drawn as hollow markers.

Every figure is drawn inside `plt.rc_context(STYLE)` and written with `save_figure`:
atomically (temporary file in the same directory, then rename), so a Snakemake rule
never leaves half a figure behind, and without a creation date, so reruns are
byte-identical.
"""

from __future__ import annotations

import textwrap
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from saesanity.core.checkpoint import atomic_write

# The study's four architectures first, then the plain ReLU SAE.
ARCHITECTURE_ORDER: tuple[str, ...] = ("batchtopk", "jumprelu", "topk", "matryoshka", "relu")

# Okabe-Ito palette: distinguishable under the common colour-vision deficiencies.
ARCHITECTURE_COLOURS: dict[str, str] = {
    "batchtopk": "#0072B2",  # blue
    "jumprelu": "#D55E00",  # vermillion
    "topk": "#009E73",  # bluish green
    "matryoshka": "#CC79A7",  # reddish purple
    "relu": "#E69F00",  # orange
}
# For architectures not listed above; chosen by a stable hash of the name.
_EXTRA_COLOURS = ("#56B4E9", "#000000", "#8C564B", "#7F7F7F")

# Markers double-encode the architecture so that print in grey stays readable.
ARCHITECTURE_MARKERS: dict[str, str] = {
    "batchtopk": "o",
    "jumprelu": "s",
    "topk": "^",
    "matryoshka": "D",
    "relu": "v",
}

VARIANT_ORDER: tuple[str, ...] = (
    "trained",
    "frozen_decoder",
    "soft_frozen_decoder",
    "frozen_encoder",
)
VARIANT_LINESTYLES: dict[str, str] = {
    "trained": "-",
    "frozen_decoder": "--",
    "soft_frozen_decoder": "-.",
    "frozen_encoder": ":",
}
VARIANT_HATCHES: dict[str, str] = {
    "trained": "",
    "frozen_decoder": "///",
    "soft_frozen_decoder": "...",
    "frozen_encoder": "xxx",
}
INIT_ORDER: tuple[str, ...] = ("iso", "cov")
INIT_LINESTYLES: dict[str, str] = {"iso": "-", "cov": "--"}

# Print-sized text: figures are drawn at their physical size (inches), so these
# point sizes are what ends up on paper.
STYLE = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    # Embed TrueType fonts (Type 42) so the PDF text stays editable and searchable.
    "pdf.fonttype": 42,
    "savefig.dpi": 300,
}
REFERENCE_COLOUR = "#444444"


def architecture_colour(architecture: str) -> str:
    """Fixed colour of an architecture; unknown names get a stable fallback colour."""
    if architecture in ARCHITECTURE_COLOURS:
        return ARCHITECTURE_COLOURS[architecture]
    # crc32 rather than hash(): Python's str hash changes between processes.
    return _EXTRA_COLOURS[zlib.crc32(architecture.encode()) % len(_EXTRA_COLOURS)]


def architecture_marker(architecture: str) -> str:
    return ARCHITECTURE_MARKERS.get(architecture, "P")


def order_key(value: str, order: Sequence[str]) -> tuple[int, str]:
    # Known names in the canonical order, unknown ones after them alphabetically.
    return (order.index(value) if value in order else len(order), str(value))


def in_order(values: Iterable[str], order: Sequence[str]) -> list[str]:
    return sorted(set(values), key=lambda value: order_key(value, order))


def require_columns(frame: pd.DataFrame, columns: Iterable[str], who: str, what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{who}: {what} lacks columns {missing}")


NOTE_FONTSIZE = 6.5


def add_note(fig: Figure, note: str | None) -> None:
    """A one-line note under the figure's title (e.g. whether the runs it shows have
    stopped changing). Save with `tight=True`: the note sits above the canvas."""
    if note:
        # About 0.55 em per character: lines as wide as the figure.
        width = max(40, int(fig.get_figwidth() * 72 / (NOTE_FONTSIZE * 0.55)))
        fig.text(0.0, 1.0, textwrap.fill(note, width), ha="left", va="bottom",
                 fontsize=NOTE_FONTSIZE)  # fmt: skip


def save_figure(fig: Figure, out_path: str | Path, tight: bool = False) -> None:
    # format="pdf" is needed because atomic_write's temporary name ends in ".tmp";
    # CreationDate=None keeps the bytes reproducible between reruns. Figures with
    # constrained layout already fit their canvas; a tight bbox would cost a second draw.
    try:
        atomic_write(
            out_path,
            lambda tmp: fig.savefig(
                tmp,
                format="pdf",
                bbox_inches="tight" if tight else None,
                metadata={"CreationDate": None},
            ),
        )
    finally:
        plt.close(fig)


def shared_legend(fig: Figure, handles: list, max_columns: int = 4) -> None:
    # Below the panels, so it never hides data, whatever the data look like.
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), max_columns),
        frameon=False,
    )


def _format_number(value: float, count: bool) -> str:
    if count or abs(value) >= 1000:
        return f"{round(value):,d}"
    # "#" keeps trailing zeros (0.350, not 0.35) so digits line up within a column.
    return f"{value:#.3g}".rstrip(".")


def format_mean_std(mean: float | None, std: float | None, count: bool = False) -> str:
    """'mean ± std' to 3 significant digits (counts as integers); the mean alone when the
    std is NaN (a single seed); a dash when the mean is missing."""
    if mean is None or not np.isfinite(mean):
        return "–"
    text = _format_number(float(mean), count)
    if std is not None and np.isfinite(std):
        text += f" ± {_format_number(float(std), count)}"
    return text
