"""Snakemake script: all evaluation points of one source in one CSV, and where they settle."""

from saesanity.provenance import write_result_csv
from saesanity.studies.length import read_tables, settled_table
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
frame = read_tables(list(snakemake.input))
write_result_csv(frame, snakemake.output.table, snakemake.config)
write_result_csv(
    settled_table(frame, snakemake.params.tolerance, snakemake.params.relative_tolerance),
    snakemake.output.settled,
    snakemake.config,
)
