"""Snakemake script: learning-rate and batch-size sensitivity at the longest budget."""

from saesanity.plots.length import figure_length_sensitivity
from saesanity.provenance import write_result_csv
from saesanity.studies.length import read_tables, sensitivity_table
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
table = sensitivity_table(read_tables(list(snakemake.input)), snakemake.params.budget)
write_result_csv(table, snakemake.output.table, snakemake.config)
figure_length_sensitivity(table, snakemake.output.figure, snakemake.params.recovery_threshold)
