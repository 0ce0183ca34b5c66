"""Snakemake script: download SAEBench's RAVEL prompt files (ravel.huggingface, at the
pinned revision) and record their provenance. Needs the Hugging Face hub."""

from pathlib import Path

from saesanity.core.checkpoint import write_json
from saesanity.evals.ravel_data import fetch_hub_files
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
manifest = snakemake.output.manifest
hub = dict(snakemake.params.hub)
write_json(manifest, {"huggingface": fetch_hub_files(hub, Path(manifest).parent)})
