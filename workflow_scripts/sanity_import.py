"""Snakemake script: the researcher's SAE (SAELens format) -> a checkpoint of this workflow."""

from saesanity.user_sae import import_user_sae
from saesanity.workflow import setup_logging

setup_logging(snakemake.log[0])
import_user_sae(
    snakemake.config["sanity"]["sae"],
    snakemake.output.weights,
    snakemake.output.config,
    baseline_architecture=snakemake.config["sanity"].get("baseline_architecture"),
)
