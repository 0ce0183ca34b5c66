"""Snakemake script: one row per run (identity, metrics, every config value)."""

from saesanity.synthetic_study import collect_metrics, write_csv
from saesanity.workflow import setup_logging

setup_logging(snakemake.log[0])
write_csv(collect_metrics(list(snakemake.input)), snakemake.output[0])
