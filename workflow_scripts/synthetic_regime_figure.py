"""Snakemake script: the figure of one regime (constant: EV vs recovery;
variable: recovery vs feature probability)."""

import pandas as pd

from saesanity.plots.synthetic import figure_constant, figure_variable
from saesanity.studies.length import settled_from_tables
from saesanity.studies.runs import setup_logging
from saesanity.studies.synthetic import (
    load_recoveries,
    random_decoder_recovery,
    training_length_note,
)

setup_logging(snakemake.log[0])
params = snakemake.params
metrics = pd.read_csv(snakemake.input.metrics)
recoveries = load_recoveries(list(snakemake.input.recovery))
# The length study's verdict on the runs it follows (None when it is off).
settled = settled_from_tables(list(snakemake.input.lengths), **params.settle_rule)
chance = random_decoder_recovery(**params.shape)
draw = figure_constant if params.law == "constant" else figure_variable
draw(
    metrics,
    recoveries,
    params.recovery_threshold,
    snakemake.output[0],
    chance_level=chance,
    # The trained runs this figure shows: does their training length settle anything?
    note=training_length_note(metrics[metrics["variant"] == "trained"], settled),
)
