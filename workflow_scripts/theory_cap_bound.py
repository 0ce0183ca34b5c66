"""Snakemake script: the theory check's table (CSV) and figure."""

from saesanity.plots.theory import figure_cap_bound
from saesanity.provenance import write_result_csv
from saesanity.studies.runs import setup_logging
from saesanity.studies.theory import cap_bound_table

setup_logging(snakemake.log[0])
table = cap_bound_table(list(snakemake.params.points), **snakemake.params.settings)
write_result_csv(table, snakemake.output.csv, snakemake.config)
figure_cap_bound(table, snakemake.output.pdf)
