"""Snakemake script: evaluate every snapshot of one run, plus its final checkpoint."""

from saesanity.provenance import write_result_csv
from saesanity.studies.length import evaluate_length_run, run_identity
from saesanity.studies.runs import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
params = snakemake.params
table = evaluate_length_run(
    snakemake.input.weights,
    snakemake.input.config,
    snakemake.input.truth,
    run_identity(dict(snakemake.wildcards)),
    dict(params.regime_spec),
    params.eval_samples,
    params.eval_batch_size,
    params.eval_seed,
    params.recovery_threshold,
    snakemake.output.points,
    final_eval_json=snakemake.input.get("final_eval"),
    latent_classification=snakemake.params.get("latent_classification", True),
)
write_result_csv(table, snakemake.output.table, snakemake.config)
