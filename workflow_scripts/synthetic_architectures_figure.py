"""Snakemake script: every architecture and baseline, both regimes."""

import pandas as pd

from saesanity.plots.synthetic import figure_architectures
from saesanity.studies.length import settled_from_tables
from saesanity.studies.runs import setup_logging
from saesanity.studies.synthetic import training_length_note

setup_logging(snakemake.log[0])
metrics = pd.read_csv(snakemake.input.metrics)
# The length study's verdict on the runs it follows (None when it is off).
settled = settled_from_tables(list(snakemake.input.lengths), **snakemake.params.settle_rule)
figure_architectures(
    metrics,
    snakemake.params.recovery_threshold,
    snakemake.output[0],
    note=training_length_note(metrics, settled),
)
