"""Calibrate the real grid's ReLU L1 coefficient per variant to hit the target L0
(run on demand, after the activation stores exist). The criterion and the search are
`saesanity.studies.relu_calibration`'s; every trial goes to bench/out/relu_l1_real.csv and the
chosen `by_l0` entries are printed.

    python bench/calibrate_relu_l1_real.py [--l0 40] [--runs trained/iso frozen_decoder/cov ...]

At paper scale (on a GPU node, after the paper config's stores exist), full
trainings are ~122k steps each; --max-samples calibrates on shorter runs, an
approximation to say so wherever the values are used:

    python bench/calibrate_relu_l1_real.py --configfile config.yaml config/paper.yaml \
        --l0 160 --max-samples 50000000
"""

import argparse
from pathlib import Path

import pandas as pd
import yaml
from snakemake.utils import update_config

from saesanity.studies.relu_calibration import calibrate_l1, held_out_metrics
from saesanity.studies.runs import real_train_config, set_threads

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument(
    "--configfile",
    nargs="+",
    default=["config.yaml"],
    help="layered like Snakemake's --configfile (later files update earlier ones)",
)
parser.add_argument("--results", default="results/real/activations")
parser.add_argument("--l0", type=int, default=40)
parser.add_argument(
    "--runs",
    nargs="+",
    default=["trained/iso", "frozen_decoder/cov", "soft_frozen_decoder/iso", "frozen_encoder/iso"],
)
parser.add_argument("--tolerance", type=float, default=0.1, help="relative L0 error accepted")
parser.add_argument("--slope", type=float, default=-2.4, help="assumed d log L0 / d log L1")
parser.add_argument("--max-trials", type=int, default=5)
parser.add_argument(
    "--max-samples",
    type=int,
    default=None,
    help="train each trial this long instead of the run's own budget (a cheaper approximation)",
)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

set_threads(args.threads)
config: dict = {}
for path in args.configfile:  # merged as Snakemake merges --configfile
    update_config(config, yaml.safe_load(Path(path).read_text()))
activations = config["real"]["activations"]
outlier_factor = activations["outlier_norm_factor"]
train_store = Path(args.results) / "train"
eval_store = Path(args.results) / "eval"


def measure(values: dict) -> dict:
    return held_out_metrics(
        values, train_store, eval_store, int(activations["eval_tokens"]),
        int(config["real"]["model"]["batch_size"]), activations["shuffle_shards"],
        outlier_factor, config["device"],
    )  # fmt: skip


rows = []
chosen = {}
for name in args.runs:
    variant, init = name.split("/")
    values = real_train_config(config, "relu", variant, init, args.l0, args.seed)
    if args.max_samples:
        values.update(max_samples=args.max_samples, snapshot_samples=[])
    l1, l0, trials = calibrate_l1(
        values, measure, args.l0, args.tolerance, args.slope, args.max_trials
    )
    for trial in trials:
        rows.append({"variant": variant, "init": init, "target_l0": args.l0, **trial})
        print(rows[-1], flush=True)
    chosen[name] = {"l1_coefficient": round(l1, 4), "l0": round(l0, 1)}

Path("bench/out").mkdir(parents=True, exist_ok=True)
pd.DataFrame(rows).to_csv("bench/out/relu_l1_real.csv", index=False)
print(yaml.safe_dump({"relu": {args.l0: chosen}}, sort_keys=False))
