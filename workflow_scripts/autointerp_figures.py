"""Snakemake script: score distributions per variant and the best latents' examples."""

from saesanity.evals.autointerp import load_latent_scores
from saesanity.plots.autointerp import figure_autointerp, write_examples
from saesanity.provenance import write_result_csv
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
scores = load_latent_scores(list(snakemake.input.scores))
write_result_csv(scores, snakemake.output.scores, snakemake.config)
figure_autointerp(scores, snakemake.output.figure, judge=snakemake.params.judge)
write_examples(
    list(snakemake.input.records),
    snakemake.output.examples,
    judge=snakemake.params.judge,
    per_run=int(snakemake.params.examples_per_run),
)
