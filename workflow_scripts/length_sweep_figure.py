"""Snakemake script: the sweep's curves of one regime, one line per learning rate."""

import pandas as pd

from saesanity.plots.length import figure_length_sweep
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
figure_length_sweep(
    pd.read_csv(snakemake.input[0]), snakemake.output[0], snakemake.params.recovery_threshold
)
