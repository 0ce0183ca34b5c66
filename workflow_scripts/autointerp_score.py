"""Snakemake script: AutoInterp of one checkpoint (explain, then score by detection)."""

from pathlib import Path

from saesanity.evals.autointerp import score_checkpoint
from saesanity.studies.runs import set_threads, setup_logging

setup_logging(snakemake.log[0])
threads = set_threads(snakemake.threads)
score_checkpoint(
    weights=snakemake.input.weights,
    sae_config=snakemake.input.config,
    windows_path=snakemake.input.windows,
    store_dir=Path(snakemake.input.eval_manifest).parent,
    model_spec=dict(snakemake.params.model),
    params=dict(snakemake.params.autointerp),
    judge_path=snakemake.input.get("judge"),
    threads=threads,
    outlier_factor=snakemake.params.outlier_factor,
    out_scores=snakemake.output.scores,
    out_records=snakemake.output.records,
    out_summary=snakemake.output.summary,
)
