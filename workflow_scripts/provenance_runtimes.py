"""Snakemake script: per-rule runtimes from the benchmark files (table and figure)."""

from saesanity.plots.runtimes import collect_benchmarks, figure_runtimes, runtime_table
from saesanity.provenance import write_result_csv
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
table = runtime_table(collect_benchmarks(dict(snakemake.params.patterns)))
write_result_csv(table, snakemake.output.table, snakemake.config)
figure_runtimes(table, snakemake.output.figure)
