"""Snakemake script: the model's hook activations of one probing family, cached once."""

import pandas as pd

from saesanity.evals.sparse_probing import cache_activations, save_cache
from saesanity.sources.language_model import ModelSpec, load_language_model
from saesanity.studies.runs import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
model = load_language_model(ModelSpec(**snakemake.params.model))
cache = cache_activations(
    model,
    pd.read_parquet(snakemake.input.data),
    context=int(snakemake.params.context),
    batch_tokens=int(snakemake.params.batch_tokens),
    outlier_factor=snakemake.params.outlier_factor,
)
save_cache(cache, snakemake.output.cache)
