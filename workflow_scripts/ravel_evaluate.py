"""Snakemake script: RAVEL masks and scores of one checkpoint, or (without a
checkpoint among the inputs) of the raw residual dimensions as the reference."""

from saesanity.evals.ravel import RavelData, evaluate_ravel_run, evaluate_residual_reference
from saesanity.sources.language_model import ModelSpec, load_language_model
from saesanity.studies.runs import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
model = load_language_model(ModelSpec(**snakemake.params.model))
data = RavelData(snakemake.input.residuals, snakemake.input.pairs)
settings = dict(snakemake.params.settings)
if "weights" in snakemake.input.keys():
    run = {key: snakemake.wildcards[key] for key in ("architecture", "variant", "init")}
    run.update(target_l0=int(snakemake.wildcards.target_l0), seed=int(snakemake.wildcards.seed))
    evaluate_ravel_run(
        snakemake.input.weights,
        snakemake.input.config,
        run,
        model,
        data,
        settings,
        snakemake.output.result,
    )
else:
    evaluate_residual_reference(model, data, settings, snakemake.output.result)
