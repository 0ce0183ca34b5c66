"""Snakemake script: the figure of one regime (constant: EV vs recovery;
variable: recovery vs feature probability)."""

import pandas as pd

from saesanity.plots import figure_constant, figure_variable
from saesanity.synthetic_study import load_recoveries, random_decoder_recovery
from saesanity.workflow import setup_logging

setup_logging(snakemake.log[0])
params = snakemake.params
metrics = pd.read_csv(snakemake.input.metrics)
recoveries = load_recoveries(list(snakemake.input.recovery))
chance = random_decoder_recovery(**params.shape)
draw = figure_constant if params.law == "constant" else figure_variable
draw(
    metrics,
    recoveries,
    params.recovery_threshold,
    snakemake.output[0],
    chance_level=chance,
)
