"""Snakemake script: the per-L0 AutoInterp table (one row per checkpoint)."""

from saesanity.evals.autointerp import collect_autointerp_metrics
from saesanity.provenance import write_result_csv
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
write_result_csv(
    collect_autointerp_metrics(list(snakemake.input)), snakemake.output[0], snakemake.config
)
