"""Snakemake script: calibrate each ReLU baseline's L1 coefficient to the SAE's L0."""

from pathlib import Path

from saesanity.core.checkpoint import write_json
from saesanity.studies.relu_calibration import calibrate_l1, held_out_metrics
from saesanity.studies.runs import set_threads, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
params = snakemake.params
stores = {
    "train_store": Path(snakemake.input.train_manifest).parent,
    "eval_store": Path(snakemake.input.eval_manifest).parent,
    "eval_tokens": int(params.eval_tokens),
    "batch_size": int(params.batch_size),
    "shuffle_shards": int(params.shuffle_shards),
    "outlier_factor": params.outlier_factor,
    "device": params.device,
}
chosen, trials = {}, {}
for name, values in dict(params.runs).items():
    l1, l0, tried = calibrate_l1(
        dict(values),
        lambda v: held_out_metrics(v, **stores),
        float(params.target_l0),
        tolerance=float(params.tolerance),
    )
    chosen[f"{params.target_l0}/{name}"] = {"l1_coefficient": l1}
    trials[name] = {"held_out_l0": l0, "trials": tried}
write_json(snakemake.output[0], {"by_l0": chosen, "calibration": trials})
