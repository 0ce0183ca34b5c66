"""Snakemake script: recovered fraction and EV against samples seen (log x)."""

import pandas as pd

from saesanity.plots.length import figure_length
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
figure_length(
    pd.read_csv(snakemake.input[0]), snakemake.output[0], snakemake.params.recovery_threshold
)
