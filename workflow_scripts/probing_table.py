"""Snakemake script: the sparse-probing metrics of every checkpoint at one L0."""

from saesanity.evals.sparse_probing import probing_table
from saesanity.provenance import write_result_csv
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
write_result_csv(probing_table(list(snakemake.input)), snakemake.output[0], snakemake.config)
