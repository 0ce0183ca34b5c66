"""Calibrate the real grid's ReLU L1 coefficient per variant to hit the target L0
(run on demand, after the activation stores exist).

ReLU + L1 has no target-L0 mechanism, and one coefficient gives each variant a
different L0: a random, frozen decoder needs more active latents to reconstruct
than a trained one. Table 1 compares variants at one L0, so each (variant, init)
gets its own coefficient, chosen by one documented criterion: the held-out L0
(the workflow's evaluation: `eval_tokens` of the eval store, same outlier rule)
within `--tolerance` of the target, using the real run's own training config
(`real_train_config`: same steps, schedule, seed and data order).

Search: start from the coefficient in config.yaml, then secant steps on
log(L0) vs log(L1) (the first step assumes slope --slope), at most --max-trials
trainings per run. Writes every trial to bench/out/relu_l1_real.csv and prints
the chosen `by_l0` entries.

    python bench/calibrate_relu_l1_real.py [--l0 40] [--runs trained/iso frozen_decoder/cov ...]

At paper scale (on a GPU node, after the paper config's stores exist), full
trainings are ~122k steps each; --max-samples calibrates on shorter runs, an
approximation to say so wherever the values are used:

    python bench/calibrate_relu_l1_real.py --configfile config.yaml config/paper.yaml \
        --l0 160 --max-samples 50000000
"""

import argparse
import math
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from snakemake.utils import update_config

from saesanity.activation_store import ActivationStore
from saesanity.metrics import reconstruction_metrics
from saesanity.training import TrainConfig, train
from saesanity.workflow import real_train_config, set_threads

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


def held_out_l0(values: dict) -> dict:
    store = ActivationStore(
        train_store,
        seed=values["seed"],
        shuffle_shards=activations["shuffle_shards"],
        outlier_factor=outlier_factor,
    )
    with tempfile.TemporaryDirectory() as out_dir:
        sae = train(TrainConfig(**values), store, out_dir, device=config["device"], progress=False)
    sae = sae.cpu()  # the store serves CPU tensors
    held_out = ActivationStore(eval_store, seed=0, outlier_factor=outlier_factor)
    tokens = min(int(activations["eval_tokens"]), held_out.n_tokens)
    batch = min(int(config["real"]["model"]["batch_size"]) * 64, tokens)
    return reconstruction_metrics(sae, held_out, tokens, batch)


rows = []
chosen = {}
for name in args.runs:
    variant, init = name.split("/")
    values = real_train_config(config, "relu", variant, init, args.l0, args.seed)
    if args.max_samples:
        values.update(max_samples=args.max_samples, snapshot_samples=[])
    trials: list[tuple[float, float]] = []  # (l1, l0)
    l1 = float(values["l1_coefficient"])
    for trial in range(args.max_trials):
        metrics = held_out_l0({**values, "l1_coefficient": l1})
        l0 = float(metrics["l0"])
        trials.append((l1, l0))
        rows.append({"variant": variant, "init": init, "target_l0": args.l0, "trial": trial,
                     "l1_coefficient": l1, **metrics})  # fmt: skip
        print(rows[-1], flush=True)
        if abs(l0 / args.l0 - 1) <= args.tolerance:
            break
        slope = args.slope
        if len(trials) >= 2:
            (l1_a, l0_a), (l1_b, l0_b) = trials[-2], trials[-1]
            if l0_a > 0 and l0_b > 0 and l1_a != l1_b and l0_a != l0_b:
                slope = math.log(l0_b / l0_a) / math.log(l1_b / l1_a)
            slope = min(slope, -0.3)  # L0 falls with L1; guard a flat or noisy secant
        # An L0 of 0 (everything dead) has no log: halve the coefficient instead.
        step = math.log(args.l0 / l0) / slope if l0 > 0 else -math.log(2)
        l1 = l1 * math.exp(max(min(step, math.log(4)), -math.log(4)))
    best_l1, best_l0 = min(trials, key=lambda t: abs(t[1] / args.l0 - 1))
    chosen[name] = {"l1_coefficient": round(best_l1, 4), "l0": round(best_l0, 1)}

Path("bench/out").mkdir(parents=True, exist_ok=True)
pd.DataFrame(rows).to_csv("bench/out/relu_l1_real.csv", index=False)
print(yaml.safe_dump({"relu": {args.l0: chosen}}, sort_keys=False))
