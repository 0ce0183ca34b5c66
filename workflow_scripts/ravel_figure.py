"""Snakemake script: RAVEL disentanglement vs L0 per architecture, one line per
variant, the raw-residual reference as a dashed line."""

import json
from pathlib import Path

import pandas as pd

from saesanity.plots.real import METRIC_AXIS_LABELS, figure_metric_vs_l0
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
METRIC_AXIS_LABELS.setdefault("ravel_disentanglement", "RAVEL disentanglement")
metrics = pd.concat([pd.read_csv(path) for path in snakemake.input.tables], ignore_index=True)
reference = json.loads(Path(snakemake.input.reference).read_text())["metrics"]
figure_metric_vs_l0(
    metrics,
    "ravel_disentanglement",
    snakemake.output.figure,
    ylabel="RAVEL disentanglement",
    reference=reference["ravel_disentanglement"],
    reference_label="raw residual (no SAE)",
)
