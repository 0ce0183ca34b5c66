"""Snakemake script: EV / CE loss / KL vs L0, and the decoder-drift histograms."""

import pandas as pd

from saesanity.plots.real import figure_drift, figure_reconstruction
from saesanity.studies.real import load_drift
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
figure_reconstruction(pd.read_csv(snakemake.input.metrics), snakemake.output.reconstruction)
figure_drift(load_drift(list(snakemake.input.drift)), snakemake.output.drift)
