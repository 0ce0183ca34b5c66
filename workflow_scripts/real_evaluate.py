"""Snakemake script: reconstruction metrics of one checkpoint (EV, L0, dead
fraction, spliced CE/KL) and its decoder drift."""

from pathlib import Path

from saesanity.sources.language_model import ModelSpec, load_language_model
from saesanity.studies.real import evaluate_real_run
from saesanity.studies.runs import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
model = load_language_model(ModelSpec(**snakemake.params.model))
run = {key: snakemake.wildcards[key] for key in ("architecture", "variant", "init")}
run.update(target_l0=int(snakemake.wildcards.target_l0), seed=int(snakemake.wildcards.seed))
evaluate_real_run(
    Path(snakemake.input.weights).parent,
    run,
    model,
    Path(snakemake.input.eval_manifest).parent,
    snakemake.input.reference,
    eval_tokens=int(snakemake.params.eval_tokens),
    batch_size=int(snakemake.params.batch_size),
    out_json=snakemake.output.metrics,
    out_drift_csv=snakemake.output.drift,
    outlier_factor=snakemake.params.outlier_factor,
    store_expect=dict(snakemake.params.store_expect),
)
