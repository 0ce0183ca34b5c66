"""Snakemake script: mean +/- std over seeds, as CSV and as a table figure."""

import pandas as pd

from saesanity.plots.synthetic import figure_summary_table
from saesanity.provenance import write_result_csv
from saesanity.studies.runs import setup_logging
from saesanity.studies.synthetic import summary_table

setup_logging(snakemake.log[0])
summary = summary_table(pd.read_csv(snakemake.input[0]))
write_result_csv(summary, snakemake.output.table, snakemake.config)
figure_summary_table(summary, snakemake.output.figure)
