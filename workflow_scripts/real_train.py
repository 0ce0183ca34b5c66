"""Snakemake script: train one SAE or random baseline on the activation store."""

from pathlib import Path

from saesanity.studies.real import train_real_run
from saesanity.studies.runs import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
train_real_run(
    Path(snakemake.input.manifest).parent,
    dict(snakemake.params.train),
    Path(snakemake.output.weights).parent,
    device=snakemake.params.device,
    shuffle_shards=int(snakemake.params.shuffle_shards),
    saelens_metadata=dict(snakemake.params.saelens),
    outlier_factor=snakemake.params.outlier_factor,
    store_expect=dict(snakemake.params.store_expect),
)
