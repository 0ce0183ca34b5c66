"""Snakemake script: write the merged config of this invocation, with its hash."""

import yaml

from saesanity.core.checkpoint import atomic_write
from saesanity.provenance import code_version, config_hash
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
config = snakemake.params.config
header = f"# config_hash: {config_hash(config)}\n# code_version: {code_version()}\n"
text = header + yaml.safe_dump(config, sort_keys=False)
atomic_write(snakemake.output[0], lambda tmp: tmp.write_text(text))
