"""Snakemake script: the summary bar chart of table 1's headline metrics."""

import pandas as pd

from saesanity.plots.summary import figure_summary_bars, summary_metrics
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
# Only the families the config evaluates at the table's L0 (AutoInterp off: no panel).
metrics = summary_metrics(snakemake.params.columns)
figure_summary_bars(
    pd.read_csv(snakemake.input.table),
    snakemake.output[0],
    metrics=metrics,
    title=snakemake.params.title,
)
