"""Snakemake script: held-out reconstruction metrics and feature recovery of one run."""

from saesanity.studies.runs import RUN_KEYS, set_threads, setup_logging
from saesanity.studies.synthetic import evaluate_synthetic_run

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
run = {key: snakemake.wildcards[key] for key in RUN_KEYS}
run["seed"] = int(run["seed"])
evaluate_synthetic_run(
    snakemake.input.weights,
    snakemake.input.config,
    snakemake.input.truth,
    run,
    dict(snakemake.params.regime_spec),
    snakemake.params.eval_samples,
    snakemake.params.eval_batch_size,
    snakemake.params.eval_seed,
    snakemake.params.recovery_threshold,
    snakemake.output.metrics,
    snakemake.output.recovery,
)
