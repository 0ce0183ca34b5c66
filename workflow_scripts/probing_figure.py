"""Snakemake script: sparse-probing top-k accuracy vs L0 (one page per k)."""

import pandas as pd

from saesanity.plots.real import figure_sparse_probing
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
figure_sparse_probing(
    pd.read_csv(snakemake.input.metrics),
    pd.read_csv(snakemake.input.baselines),
    ks=list(snakemake.params.ks),
    out_path=snakemake.output[0],
)
