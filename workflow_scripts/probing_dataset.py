"""Snakemake script: one probing dataset family (parquet) and its provenance manifest."""

import logging
import time

from saesanity.core.checkpoint import atomic_write, write_json
from saesanity.evals.probing_data import build_family, load_hf_family
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
started = time.perf_counter()
family = snakemake.wildcards.family
settings = dict(snakemake.params.settings)
if settings["source"] == "huggingface":
    data, manifest = load_hf_family(family, settings["huggingface"], settings)
else:
    data, manifest = build_family(family, settings, snakemake.params.archive_dir)
manifest["seconds"] = round(time.perf_counter() - started, 1)
logging.info("%s: %s", family, manifest["counts"])
atomic_write(snakemake.output.data, lambda tmp: data.to_parquet(tmp, index=False))
write_json(snakemake.output.manifest, manifest)
