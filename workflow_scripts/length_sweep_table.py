"""Snakemake script: the sweep's points of one regime, per-run summary and best settings."""

from saesanity.provenance import write_result_csv
from saesanity.studies.length import read_tables, sweep_best, sweep_summary
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
frame = read_tables(list(snakemake.input))
summary = sweep_summary(frame)
write_result_csv(frame, snakemake.output.table, snakemake.config)
write_result_csv(summary, snakemake.output.summary, snakemake.config)
write_result_csv(sweep_best(summary), snakemake.output.best, snakemake.config)
