"""Snakemake script: the researcher's SAE's L0 (and EV) on the held-out tokens."""

from pathlib import Path

from saesanity.studies.runs import set_threads, setup_logging
from saesanity.studies.sanity import measure_user_sae

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
measure_user_sae(
    snakemake.input.weights,
    snakemake.input.config,
    Path(snakemake.input.eval_manifest).parent,
    eval_tokens=int(snakemake.params.eval_tokens),
    batch_size=int(snakemake.params.batch_size),
    outlier_factor=snakemake.params.outlier_factor,
    store_expect=dict(snakemake.params.store_expect),
    out_json=snakemake.output[0],
)
