"""Snakemake script: one row per run (identity, metrics, every config value)."""

from saesanity.provenance import write_result_csv
from saesanity.studies.runs import setup_logging
from saesanity.studies.synthetic import collect_metrics

setup_logging(snakemake.log[0])
write_result_csv(collect_metrics(list(snakemake.input)), snakemake.output[0], snakemake.config)
