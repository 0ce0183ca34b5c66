"""Snakemake script: the real training-length study's metrics of one snapshot."""

from pathlib import Path

from saesanity.evals.sparse_probing import load_cache
from saesanity.sources.language_model import ModelSpec, load_language_model
from saesanity.studies.real_length import RUN_KEYS, evaluate_length_point
from saesanity.studies.runs import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
run = {key: snakemake.wildcards[key] for key in RUN_KEYS}
for key in ("target_l0", "batch_size", "seed"):
    run[key] = int(run[key])
evaluate_length_point(
    snakemake.input.weights,
    snakemake.input.config,
    run,
    load_language_model(ModelSpec(**snakemake.params.model)),
    Path(snakemake.input.train_manifest).parent,
    Path(snakemake.input.eval_manifest).parent,
    snakemake.input.reference,
    {
        family: load_cache(path)
        for family, path in zip(snakemake.params.families, snakemake.input.caches, strict=True)
    },
    list(snakemake.params.probing_ks),
    eval_tokens=int(snakemake.params.eval_tokens),
    train_eval_tokens=int(snakemake.params.train_eval_tokens),
    model_batch_size=int(snakemake.params.model_batch_size),
    out_json=snakemake.output[0],
    outlier_factor=snakemake.params.outlier_factor,
    store_expect=dict(snakemake.params.store_expect),
)
