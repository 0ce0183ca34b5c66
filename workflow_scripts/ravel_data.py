"""Snakemake script: RAVEL prompts the model answers correctly, their residuals at
the hook, and the cause/isolation pairs per attribute."""

import json
from pathlib import Path

from saesanity.language_model import ModelSpec, load_language_model
from saesanity.ravel import build_ravel_data
from saesanity.workflow import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
model = load_language_model(ModelSpec(**snakemake.params.model))
build_ravel_data(
    model,
    Path(snakemake.input.archives).parent,
    dict(snakemake.params.settings),
    snakemake.output.residuals,
    snakemake.output.pairs,
    provenance=json.loads(Path(snakemake.input.archives).read_text())["archives"],
)
