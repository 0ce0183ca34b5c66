"""Snakemake script: the long runs' best setting per regime and architecture."""

import pandas as pd

from saesanity.provenance import write_result_csv
from saesanity.studies.length import long_best, read_tables
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
frame = read_tables([snakemake.input.table])
settled = pd.read_csv(snakemake.input.settled)
write_result_csv(long_best(frame, settled), snakemake.output[0], snakemake.config)
