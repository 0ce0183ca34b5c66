"""Snakemake script: join per-checkpoint reconstruction metrics into one CSV."""

from saesanity.provenance import write_result_csv
from saesanity.studies.real import collect_real_metrics
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
write_result_csv(collect_real_metrics(list(snakemake.input)), snakemake.output[0], snakemake.config)
