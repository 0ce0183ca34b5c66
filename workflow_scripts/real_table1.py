"""Snakemake script: table 1 (CSV + PDF) at the middle L0."""

import pandas as pd

from saesanity.plots.real import figure_table1
from saesanity.provenance import write_result_csv
from saesanity.studies.real import table1
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
metrics = pd.read_csv(snakemake.input.metrics)
# Table 1's metric columns, in the configured order (a family may lack some, e.g. CE for ReLU).
columns = [column for column in snakemake.params.columns if column in metrics.columns]
table = table1(metrics, int(snakemake.params.l0), columns)
write_result_csv(table, snakemake.output.csv, snakemake.config)
figure_table1(table, snakemake.output.pdf, title=snakemake.params.title)
