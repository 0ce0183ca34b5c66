"""Snakemake script: the RAVEL metric family at one L0 (one row per checkpoint)."""

from saesanity.evals.ravel import collect_ravel_metrics
from saesanity.provenance import write_result_csv
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
write_result_csv(
    collect_ravel_metrics(list(snakemake.input)), snakemake.output[0], snakemake.config
)
