"""Snakemake script: residual-stream baselines (top-k dimensions, full-width probe)."""

from saesanity.evals.sparse_probing import load_cache, residual_baselines
from saesanity.provenance import write_result_csv
from saesanity.studies.runs import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
caches = {
    family: load_cache(path)
    for family, path in zip(snakemake.params.families, snakemake.input.caches, strict=True)
}
baselines = residual_baselines(
    caches,
    ks=list(snakemake.params.ks),
    cs=list(snakemake.params.cs),
    validation_fraction=float(snakemake.params.validation_fraction),
)
write_result_csv(baselines, snakemake.output[0], snakemake.config)
