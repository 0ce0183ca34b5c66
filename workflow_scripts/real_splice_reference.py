"""Snakemake script: hooked activations of the evaluation windows plus the clean
and zero-ablation losses (the reference of every CE/KL measurement)."""

from saesanity.core.checkpoint import write_json
from saesanity.sources.activation_store import load_windows
from saesanity.sources.language_model import ModelSpec, load_language_model
from saesanity.studies.real import build_splice_reference
from saesanity.studies.runs import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
spec = ModelSpec(**snakemake.params.model)
model = load_language_model(spec)
windows = load_windows(snakemake.input.windows)[: int(snakemake.params.windows)]
summary = build_splice_reference(model, windows, snakemake.output.reference, spec.batch_size)
write_json(snakemake.output.summary, summary)
