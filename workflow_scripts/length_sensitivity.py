"""Snakemake script: learning-rate and batch-size sensitivity at the longest budget."""

from saesanity.length_plots import figure_length_sensitivity
from saesanity.length_study import read_tables, sensitivity_table
from saesanity.provenance import write_result_csv
from saesanity.workflow import setup_logging

setup_logging(snakemake.log[0])
table = sensitivity_table(read_tables(list(snakemake.input)), snakemake.params.budget)
write_result_csv(table, snakemake.output.table, snakemake.config)
figure_length_sensitivity(table, snakemake.output.figure, snakemake.params.recovery_threshold)
