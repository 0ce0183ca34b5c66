"""Snakemake script: join the per-family metric tables into results/real/metrics.csv."""

import pandas as pd

from saesanity.provenance import write_result_csv
from saesanity.studies.real import join_metric_families
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
frames = [pd.read_csv(path) for path in snakemake.input]
write_result_csv(join_metric_families(frames), snakemake.output[0], snakemake.config)
