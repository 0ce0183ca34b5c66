"""Snakemake script: sparse-probing accuracies of one checkpoint."""

import time

from saesanity.core.checkpoint import load_sae, write_json
from saesanity.evals.sparse_probing import evaluate_checkpoint, load_cache
from saesanity.studies.runs import real_run_from_path, set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
started = time.perf_counter()
sae = load_sae(snakemake.input.weights, snakemake.input.config).eval()
caches = {
    family: load_cache(path)
    for family, path in zip(snakemake.params.families, snakemake.input.caches, strict=True)
}
metrics = evaluate_checkpoint(
    sae, caches, ks=list(snakemake.params.ks), full_probe=snakemake.params.full_probe
)
write_json(
    snakemake.output[0],
    {
        "run": real_run_from_path(snakemake.input.weights),
        "metrics": metrics,
        "seconds": round(time.perf_counter() - started, 1),
    },
)
