"""Snakemake script: every architecture and baseline, both regimes."""

import pandas as pd

from saesanity.plots.synthetic import figure_architectures
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
figure_architectures(
    pd.read_csv(snakemake.input[0]), snakemake.params.recovery_threshold, snakemake.output[0]
)
