"""Calibrate the ReLU SAE's L1 coefficient to land near the target L0 (run on demand).

ReLU + L1 has no target-L0 mechanism, so the coefficient is the one value we
choose by a documented criterion: the achieved held-out L0 closest to k = 20 on
the constant regime at the default training settings. Writes bench/out/relu_l1.csv.

    python bench/calibrate_relu_l1.py [coefficients...]
"""

import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from saesanity.core.training import TrainConfig, train
from saesanity.evals.metrics import reconstruction_metrics
from saesanity.sources.synthetic import SyntheticSource, make_ground_truth
from saesanity.studies.runs import synthetic_train_config

config = yaml.safe_load(Path("config.yaml").read_text())
study = config["synthetic"]
coefficients = [float(c) for c in sys.argv[1:]] or [0.03, 0.06, 0.12, 0.25]
truth = make_ground_truth(
    study["n"], study["num_features"], study["regimes"]["constant"], study["magnitude"],
    study["data_seed"],
)  # fmt: skip
rows = []
for coefficient in coefficients:
    values = synthetic_train_config(config, "constant", "relu", "trained", "iso", 0)
    values.update(l1_coefficient=coefficient, max_samples=1_024_000, plateau_rel_tol=0.0)
    with tempfile.TemporaryDirectory() as out_dir:
        sae = train(TrainConfig(**values), SyntheticSource(truth, 0), out_dir, progress=False)
    metrics = reconstruction_metrics(sae, SyntheticSource(truth, 1, "eval"), 65536, 8192)
    rows.append({"l1_coefficient": coefficient, **metrics})
    print(rows[-1], flush=True)
Path("bench/out").mkdir(parents=True, exist_ok=True)
pd.DataFrame(rows).to_csv("bench/out/relu_l1.csv", index=False)
