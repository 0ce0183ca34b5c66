"""Snakemake script: train one synthetic SAE or random baseline (resumable)."""

from pathlib import Path

from saesanity.studies.runs import set_threads, setup_logging
from saesanity.studies.synthetic import train_synthetic_run

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
train_synthetic_run(
    snakemake.input.truth,
    dict(snakemake.params.train),
    Path(snakemake.output.weights).parent,
    device=snakemake.params.device,
)
