"""Snakemake script: concatenate CSV tables with the same kind of rows."""

import pandas as pd

from saesanity.provenance import write_result_csv
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
write_result_csv(
    pd.concat([pd.read_csv(path) for path in snakemake.input]),
    snakemake.output[0],
    snakemake.config,
)
