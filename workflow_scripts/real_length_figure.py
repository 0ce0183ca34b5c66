"""Snakemake script: the gap "trained minus best random baseline" against training steps."""

import pandas as pd

from saesanity.plots.real_length import figure_real_length
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
figure_real_length(
    pd.read_csv(snakemake.input.points), pd.read_csv(snakemake.input.gaps), snakemake.output[0]
)
