"""Snakemake script: residual-stream activations of one split's windows -> store."""

from pathlib import Path

from saesanity.sources.activation_store import extract_activations, load_windows
from saesanity.sources.language_model import ModelSpec, load_language_model
from saesanity.studies.runs import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
spec = ModelSpec(**snakemake.params.model)
model = load_language_model(spec)
settings = dict(snakemake.params.activations)
extract_activations(
    model,
    load_windows(snakemake.input.windows),
    Path(snakemake.output.manifest).parent,
    windows_per_shard=int(settings["windows_per_shard"]),
    dtype=settings["dtype"],
    exclude_bos=True,
    extra_manifest={"split": snakemake.wildcards.split, "revision": spec.revision},
)
