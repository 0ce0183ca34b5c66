"""Snakemake script: the researcher's SAE (SAELens format) -> a checkpoint of this workflow."""

from saesanity.studies.runs import setup_logging
from saesanity.studies.sanity import import_user_sae

setup_logging(snakemake.log[0])
import_user_sae(
    snakemake.config["sanity"]["sae"],
    snakemake.output.weights,
    snakemake.output.config,
    baseline_architecture=snakemake.config["sanity"].get("baseline_architecture"),
)
