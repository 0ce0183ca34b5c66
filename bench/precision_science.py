"""Does bf16 autocast change what an SAE learns? float32 vs bfloat16 training on the
default config, side by side (run on demand, not in CI).

For each architecture, the default config's run (trained, iso, seed 0; synthetic: the
constant regime; real: the table's L0 on the activation store, if it has been
extracted) is trained twice from the same seed and data order, once per precision,
then evaluated with the workflow's own code in float32: held-out explained variance,
L0 and dead fraction; on synthetic data also the recovered features (cos >= 0.8), the
mean max cosine and SynthSAEBench's matched MCC. Each row is one (study, architecture)
with both values and their difference; the training wall times give the speed-up.

`real_store` asks the same of the language model's forward pass: the training store's
windows are extracted again under bf16 autocast (`real.activations.precision: bfloat16`) into
bench/out/store_bfloat16, its activations are compared with the float32 store's token by
token, and each architecture is trained (in float32) on each store and evaluated on the
float32 held-out store.

Writes bench/out/precision_science.csv (and precision_store.csv for `real_store`) and
prints them.

    python bench/precision_science.py [--studies synthetic real real_store] [--architectures ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from saesanity.core.checkpoint import load_sae
from saesanity.core.training import TrainConfig, train
from saesanity.evals.metrics import (
    feature_recovery,
    reconstruction_metrics,
    recovery_summary,
    synthsaebench_metrics,
)
from saesanity.sources.activation_store import ActivationStore
from saesanity.sources.synthetic import SyntheticSource, make_ground_truth
from saesanity.studies.runs import real_table_l0, real_train_config, synthetic_train_config

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "precision_science.csv"
PRECISIONS = ("float32", "bfloat16")


def train_and_load(values: dict, source, out_dir: Path):
    started = time.perf_counter()
    train(TrainConfig(**values), source, out_dir, progress=False)
    seconds = time.perf_counter() - started
    return load_sae(out_dir / "sae.safetensors", out_dir / "sae.json"), seconds


def synthetic_rows(config: dict, architecture: str, work: Path, seed: int = 0) -> dict:
    study = config["synthetic"]
    regime = "constant"
    truth = make_ground_truth(
        study["n"], study["num_features"], study["regimes"][regime], study["magnitude"],
        study["data_seed"],
    )  # fmt: skip
    values = synthetic_train_config(config, regime, architecture, "trained", "iso", seed)
    values["snapshot_samples"] = []
    row = {"study": "synthetic", "architecture": architecture, "seed": seed}
    for precision in PRECISIONS:
        values["precision"] = precision
        sae, seconds = train_and_load(
            values, SyntheticSource(truth, seed=seed), work / f"syn_{architecture}_{precision}"
        )
        source = SyntheticSource(truth, seed=study["eval_seed"], stream="eval")
        metrics = reconstruction_metrics(
            sae, source, study["eval_samples"], study["eval_batch_size"]
        )
        recovery, _ = feature_recovery(truth.features, sae.W_dec.detach())
        metrics.update(recovery_summary(recovery, study["recovery_threshold"]))
        metrics.update(
            synthsaebench_metrics(sae, source, study["eval_samples"], study["eval_batch_size"])
        )
        meta = json.loads((work / f"syn_{architecture}_{precision}" / "sae.json").read_text())
        row["samples_seen"] = meta["samples_seen"]
        row[f"train_seconds_{precision}"] = round(seconds, 1)
        for key in ("explained_variance", "l0", "dead_fraction", "recovered_count",
                    "mean_max_cosine", "mcc"):  # fmt: skip
            row[f"{key}_{precision}"] = metrics.get(key)
    return row


def real_rows(
    config: dict, architecture: str, work: Path, bf16_train_store: Path | None = None
) -> dict | None:
    """Training in each precision on the float32 store; or, with `bf16_train_store`,
    float32 training on the float32 and on the bf16 store (the model's precision)."""
    store_dir = ROOT / "results" / "real" / "activations"
    if not (store_dir / "train" / "manifest.json").exists():
        return None
    real = config["real"]
    l0 = real_table_l0(config)
    values = real_train_config(config, architecture, "trained", "iso", l0, 0)
    values["snapshot_samples"] = []
    outlier = real["activations"].get("outlier_norm_factor")
    study = "real" if bf16_train_store is None else "real_store"
    row = {"study": study, "architecture": architecture}
    for precision in PRECISIONS:
        train_dir = store_dir / "train"
        if bf16_train_store is None:
            values["precision"] = precision
        else:
            values["precision"] = "float32"
            train_dir = bf16_train_store if precision == "bfloat16" else train_dir
        store = ActivationStore(
            train_dir, seed=0, shuffle_shards=real["activations"]["shuffle_shards"],
            outlier_factor=outlier,
        )  # fmt: skip
        sae, seconds = train_and_load(values, store, work / f"{study}_{architecture}_{precision}")
        held_out = ActivationStore(store_dir / "eval", seed=0, outlier_factor=outlier)
        metrics = reconstruction_metrics(
            sae, held_out, real["activations"]["eval_tokens"], values["batch_size"]
        )
        row["samples_seen"] = values["max_samples"]
        row[f"train_seconds_{precision}"] = round(seconds, 1)
        for key in ("explained_variance", "l0", "dead_fraction"):
            row[f"{key}_{precision}"] = metrics.get(key)
    return row


def bf16_store(config: dict) -> Path:
    """The training store extracted again in bf16 (resumable, reused when complete)."""
    from saesanity.sources.activation_store import extract_activations, load_windows
    from saesanity.sources.language_model import ModelSpec, load_language_model
    from saesanity.studies.runs import real_extraction_spec

    out = ROOT / "bench" / "out" / "store_bfloat16"
    spec = ModelSpec(**{**real_extraction_spec(config), "precision": "bfloat16"})
    started = time.perf_counter()
    extract_activations(
        load_language_model(spec), load_windows(ROOT / "results/real/tokens/train.npy"), out,
        windows_per_shard=config["real"]["activations"]["windows_per_shard"],
        dtype=config["real"]["activations"]["dtype"], exclude_bos=True,
    )  # fmt: skip
    print(f"bf16 store ready in {time.perf_counter() - started:.0f} s", flush=True)
    return out


def store_difference(float32_dir: Path, bfloat16_dir: Path) -> dict:
    """Token-by-token relative error and cosine of the bf16 store against float32's."""
    errors, cosines = [], []
    float32 = ActivationStore(float32_dir, seed=0)
    bfloat16 = ActivationStore(bfloat16_dir, seed=0)
    for a, b in zip(float32.iter_batches(65536), bfloat16.iter_batches(65536), strict=True):
        errors.append((b - a).norm(dim=1) / a.norm(dim=1))
        cosines.append(torch.nn.functional.cosine_similarity(a, b, dim=1))
    error, cosine = torch.cat(errors), torch.cat(cosines)
    return {
        "tokens": len(error),
        "relative_error_median": float(error.median()),
        "relative_error_p99": float(error.quantile(0.99)),
        "relative_error_max": float(error.max()),
        "cosine_min": float(cosine.min()),
        "cosine_median": float(cosine.median()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", nargs="*", default=["synthetic", "real"])
    parser.add_argument(
        "--architectures", nargs="*", default=["topk", "batchtopk", "matryoshka", "jumprelu"]
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="synthetic runs' seed")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for study in args.studies:
            store = None
            if study == "real_store":
                store = bf16_store(config)
                difference = store_difference(ROOT / "results/real/activations/train", store)
                print(json.dumps(difference), flush=True)
                pd.DataFrame([difference]).to_csv(OUT.parent / "precision_store.csv", index=False)
            for architecture in args.architectures:
                if study == "synthetic":
                    row = synthetic_rows(config, architecture, Path(tmp), args.seed)
                else:
                    row = real_rows(config, architecture, Path(tmp), store)
                if row is None:
                    print(f"{study}: no activation store under results/real/activations; skipped")
                    break
                rows.append(row)
                print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows)
    for key in ("explained_variance", "l0", "dead_fraction", "recovered_count",
                "mean_max_cosine", "mcc"):  # fmt: skip
        if f"{key}_float32" in table:
            table[f"{key}_diff"] = table[f"{key}_bfloat16"] - table[f"{key}_float32"]
    table["speedup_bf16"] = (
        table["train_seconds_float32"] / table["train_seconds_bfloat16"]
    ).round(2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(table.to_string(index=False))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
