"""Sparse probing (SAEBench's `evals/sparse_probing` protocol) on cached activations.

Per dataset family (`probing_data`), once per model and hook:

* each text becomes BOS + its first `context - 1` tokens; the model's activations at the
  SAE's hook are kept for the non-special tokens (BOS and padding are masked, as SAEBench
  zeroes BOS/PAD/EOS before pooling), stored flat with per-example offsets
  (`cache_activations`). Every checkpoint reuses this cache;
* the residual-stream baselines are fitted on the mean-pooled activations
  (`residual_baselines`): SAEBench's `llm_top_k` (the top-k procedure on residual
  dimensions) and a full-width logistic-regression probe whose L2 strength is chosen on a
  validation part of train (SAEBench's full probe picks its best epoch on test; not here).

Per checkpoint (`evaluate_checkpoint`): the SAE encodes every kept token, latents are
mean-pooled per example with the same mask (SAEBench's `get_sae_meaned_activations`),
and for every class a balanced one-vs-rest task picks the k latents with the largest
|mean_pos - mean_neg| on train and fits sklearn's LogisticRegression(C=1, max_iter=1000)
on them; test accuracy is averaged over classes, then over families. Optionally the
full-width probe is fitted on all latents too (SAEBench's sae_test_accuracy).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from saesanity.core.checkpoint import atomic_write
from saesanity.studies.runs import REAL_RUN_KEYS

if TYPE_CHECKING:
    from saesanity.core.sae import SparseAutoencoder
    from saesanity.sources.language_model import LanguageModel

log = logging.getLogger(__name__)

SAEBENCH_SEED = 42
TOP_K_PROBE_C = 1.0  # SAEBench: LogisticRegression(penalty="l2", C=1.0, max_iter=1000)


@dataclass
class ActivationCache:
    """Kept-token activations of one family: acts[offsets[i]:offsets[i+1]] are example i's."""

    acts: torch.Tensor  # [tokens, d_model] float32
    offsets: torch.Tensor  # [examples + 1] int64
    labels: np.ndarray  # [examples] int (index into classes)
    is_test: np.ndarray  # [examples] bool
    classes: list[str]
    info: dict

    @property
    def n_examples(self) -> int:
        return len(self.labels)

    def example_index(self) -> torch.Tensor:
        """Example id of every kept token."""
        lengths = self.offsets[1:] - self.offsets[:-1]
        return torch.repeat_interleave(torch.arange(self.n_examples), lengths)

    def pooled(self) -> np.ndarray:
        """Mean of each example's kept-token activations [examples, d_model]."""
        return mean_pool(self.acts, self.example_index(), self.n_examples).numpy()


def mean_pool(values: torch.Tensor, example: torch.Tensor, n_examples: int) -> torch.Tensor:
    sums = torch.zeros(n_examples, values.shape[1], dtype=torch.float64)
    sums.index_add_(0, example, values.double())
    counts = torch.bincount(example, minlength=n_examples).clamp(min=1).double()
    return (sums / counts[:, None]).float()


def save_cache(cache: ActivationCache, path: str | Path) -> None:
    tensors = {
        "acts": cache.acts.contiguous(),
        "offsets": cache.offsets.contiguous(),
        "labels": torch.from_numpy(cache.labels.astype(np.int64)),
        "is_test": torch.from_numpy(cache.is_test.astype(np.uint8)),
    }
    metadata = {"classes": json.dumps(cache.classes), "info": json.dumps(cache.info)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_cache(path: str | Path) -> ActivationCache:
    from safetensors import safe_open

    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    return ActivationCache(
        acts=tensors["acts"].float(),
        offsets=tensors["offsets"],
        labels=tensors["labels"].numpy(),
        is_test=tensors["is_test"].numpy().astype(bool),
        classes=json.loads(metadata["classes"]),
        info=json.loads(metadata["info"]),
    )


# ----------------------------------------------------------------------------- caching


def tokenize_examples(
    tokenizer, texts: list[str], bos_token_id: int, context: int
) -> list[list[int]]:
    """BOS + the first context - 1 tokens of each text (SAEBench truncates to its context)."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [[bos_token_id] + list(row[: context - 1]) for row in ids]


def cache_activations(
    model: LanguageModel,
    data: pd.DataFrame,
    context: int,
    batch_tokens: int,
    outlier_factor: float | None,
) -> ActivationCache:
    """Hook activations of every example's non-special tokens (see the module docstring).

    With `outlier_factor`, tokens whose norm exceeds factor x the median kept-token norm
    (the model's attention-sink tokens, the SAEs' training store leaves them out too) are
    masked as well, for the residual baselines and the SAE alike; an example never loses
    all its tokens (it then keeps them)."""
    classes = sorted(data["label"].unique())
    started = time.perf_counter()
    tokens = tokenize_examples(model.tokenizer, data["text"].tolist(), model.bos_token_id, context)
    special = torch.tensor(sorted(set(model.tokenizer.all_special_ids)))
    pad_id = model.tokenizer.pad_token_id
    pad_id = model.bos_token_id if pad_id is None else pad_id
    # Texts sorted by length (little padding), batched up to `batch_tokens` padded tokens:
    # a forward pass has a large fixed cost, so short texts go in large batches.
    order = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))
    per_example: list[torch.Tensor | None] = [None] * len(tokens)
    batches: list[list[int]] = [[]]
    for i in order:
        if batches[-1] and (len(batches[-1]) + 1) * len(tokens[i]) > batch_tokens:
            batches.append([])
        batches[-1].append(i)
    for batch in tqdm(batches, desc="probing activations", mininterval=10):
        width = max(len(tokens[i]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : len(tokens[i])] = torch.tensor(tokens[i])
        resid = model.residual(ids)  # right padding: causal attention never sees it
        for row, i in enumerate(batch):
            row_ids = ids[row, : len(tokens[i])]
            keep = ~torch.isin(row_ids, special)
            per_example[i] = resid[row, : len(tokens[i])][keep]
    norms = torch.cat([a.norm(dim=1) for a in per_example if a is not None and len(a)])
    median = float(norms.median())
    dropped = 0
    kept_acts = []
    for i, acts in enumerate(per_example):
        assert acts is not None
        if outlier_factor is not None:
            keep = acts.norm(dim=1) <= outlier_factor * median
            if keep.any():
                dropped += int((~keep).sum())
                acts = acts[keep]
        if len(acts) == 0:
            raise ValueError(
                f"example {i} has no token besides special ones: {data.text.iloc[i]!r}"
            )
        kept_acts.append(acts)
    lengths = torch.tensor([len(a) for a in kept_acts])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    info = {
        "examples": len(kept_acts),
        "kept_tokens": int(offsets[-1]),
        "model_tokens": int(sum(len(t) for t in tokens)),
        "outlier_tokens_dropped": dropped,
        "median_token_norm": median,
        "outlier_factor": outlier_factor,
        "context": context,
        "seconds": round(time.perf_counter() - started, 1),
    }
    log.info("cached %s", info)
    label_index = {c: i for i, c in enumerate(classes)}
    return ActivationCache(
        acts=torch.cat(kept_acts).float(),
        offsets=offsets,
        labels=data["label"].map(label_index).to_numpy(),
        is_test=(data["split"] == "test").to_numpy(),
        classes=classes,
        info=info,
    )


# ----------------------------------------------------------------------------- probing


@dataclass
class ProbeTask:
    """One balanced one-vs-rest task: indices into the family's examples, 0/1 targets."""

    name: str
    train: np.ndarray
    y_train: np.ndarray
    test: np.ndarray
    y_test: np.ndarray


def _balanced_indices(labels: np.ndarray, pool: np.ndarray, positive: int, rng) -> tuple:
    """SAEBench's `prepare_probe_data`: all positives; ceil(n_pos / (C - 1)) negatives
    sampled from each other class, trimmed to n_pos; shuffled."""
    classes = np.unique(labels[pool])
    pos = pool[labels[pool] == positive]
    per_class = math.ceil(len(pos) / max(1, len(classes) - 1))
    neg = []
    for other in classes:
        if other == positive:
            continue
        members = pool[labels[pool] == other]
        neg.append(rng.choice(members, size=min(per_class, len(members)), replace=False))
    neg = np.concatenate(neg)[: len(pos)]
    index = np.concatenate([pos, neg])
    target = np.concatenate([np.ones(len(pos), dtype=int), np.zeros(len(neg), dtype=int)])
    perm = rng.permutation(len(index))
    return index[perm], target[perm]


def one_vs_rest_tasks(
    labels: np.ndarray, is_test: np.ndarray, classes: list[str], seed: int = SAEBENCH_SEED
) -> list[ProbeTask]:
    rng = np.random.default_rng(seed)
    train_pool = np.flatnonzero(~is_test)
    test_pool = np.flatnonzero(is_test)
    tasks = []
    for c, name in enumerate(classes):
        train, y_train = _balanced_indices(labels, train_pool, c, rng)
        test, y_test = _balanced_indices(labels, test_pool, c, rng)
        tasks.append(ProbeTask(name, train, y_train, test, y_test))
    return tasks


def top_k_features(x_train: np.ndarray, y_train: np.ndarray, k: int) -> np.ndarray:
    """The k features with the largest |mean over positives - mean over negatives|."""
    diff = np.abs(x_train[y_train == 1].mean(0) - x_train[y_train == 0].mean(0))
    return np.argsort(-diff, kind="stable")[:k]


def _fit_accuracy(x_train, y_train, x_test, y_test, c: float) -> float:
    from sklearn.linear_model import LogisticRegression

    probe = LogisticRegression(C=c, max_iter=1000)
    probe.fit(x_train, y_train)
    return float(probe.score(x_test, y_test))


def top_k_accuracy(features: np.ndarray, tasks: list[ProbeTask], ks: list[int]) -> dict:
    """{k: {task name: test accuracy}} of the top-k probe on `features` [examples, F]."""
    results: dict[int, dict[str, float]] = {k: {} for k in ks}
    for task in tasks:
        x_train, x_test = features[task.train], features[task.test]
        for k in ks:
            top = top_k_features(x_train, task.y_train, k)
            results[k][task.name] = _fit_accuracy(
                x_train[:, top], task.y_train, x_test[:, top], task.y_test, TOP_K_PROBE_C
            )
    return results


def full_probe_accuracy(
    features: np.ndarray,
    tasks: list[ProbeTask],
    cs: list[float],
    validation_fraction: float,
    seed: int = SAEBENCH_SEED,
) -> dict[str, dict]:
    """Full-width L2 logistic regression on standardised features; C is chosen on a
    validation part of train (never on test), then the probe is refitted on all of train."""
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    results = {}
    for task in tasks:
        n_val = max(2, int(round(validation_fraction * len(task.train))))
        perm = rng.permutation(len(task.train))
        val, fit = task.train[perm[:n_val]], task.train[perm[n_val:]]
        y_val, y_fit = task.y_train[perm[:n_val]], task.y_train[perm[n_val:]]
        scaler = StandardScaler().fit(features[fit])
        scores = [
            _fit_accuracy(
                scaler.transform(features[fit]), y_fit, scaler.transform(features[val]), y_val, c
            )
            for c in cs
        ]
        best = cs[int(np.argmax(scores))]  # first best: the strongest regularisation
        scaler = StandardScaler().fit(features[task.train])
        accuracy = _fit_accuracy(
            scaler.transform(features[task.train]),
            task.y_train,
            scaler.transform(features[task.test]),
            task.y_test,
            best,
        )
        results[task.name] = {"accuracy": accuracy, "C": best, "validation_accuracy": max(scores)}
    return results


def _mean(values) -> float:
    return float(np.mean(list(values)))


def residual_baselines(
    caches: dict[str, ActivationCache], ks: list[int], cs: list[float], validation_fraction: float
) -> pd.DataFrame:
    """Per family and overall: SAEBench's llm_top_{k} and the full-width residual probe
    (llm_test_accuracy), accuracies averaged over classes (overall: then over families)."""
    rows = []
    for family, cache in caches.items():
        pooled = cache.pooled()
        tasks = one_vs_rest_tasks(cache.labels, cache.is_test, cache.classes)
        top = top_k_accuracy(pooled, tasks, ks)
        full = full_probe_accuracy(pooled, tasks, cs, validation_fraction)
        row = {"family": family}
        row.update({f"llm_top_{k}_test_accuracy": _mean(top[k].values()) for k in ks})
        row["llm_test_accuracy"] = _mean(r["accuracy"] for r in full.values())
        row["llm_probe_C"] = json.dumps({name: r["C"] for name, r in full.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    overall = {"family": "all"}
    overall.update(frame.drop(columns=["family", "llm_probe_C"]).mean().to_dict())
    return pd.concat([frame, pd.DataFrame([overall])], ignore_index=True)


@torch.no_grad()
def sae_pooled_latents(
    sae: SparseAutoencoder, cache: ActivationCache, batch_tokens: int = 4096
) -> np.ndarray:
    """The SAE's latents of every kept token, mean-pooled per example [examples, d_sae]."""
    example = cache.example_index()
    sums = torch.zeros(cache.n_examples, sae.d_sae, dtype=torch.float64)
    for start in range(0, len(cache.acts), batch_tokens):
        latents = sae.encode(cache.acts[start : start + batch_tokens])
        sums.index_add_(0, example[start : start + batch_tokens], latents.double())
    counts = (cache.offsets[1:] - cache.offsets[:-1]).double()
    return (sums / counts[:, None]).float().numpy()


def evaluate_checkpoint(
    sae: SparseAutoencoder,
    caches: dict[str, ActivationCache],
    ks: list[int],
    full_probe: dict | None = None,
) -> dict:
    """SAEBench's sae_top_{k}_test_accuracy per family and averaged over families.

    With full_probe = {cs, validation_fraction}, also SAEBench's sae_test_accuracy: a
    probe on all d_sae pooled latents, chosen like the residual full probe (C on a
    validation part of train, never on test), so the two full probes compare directly."""
    metrics: dict[str, float] = {}
    per_k: dict[int, list[float]] = {k: [] for k in ks}
    full: list[float] = []
    for family, cache in tqdm(caches.items(), desc="sparse probing", mininterval=10):
        started = time.perf_counter()
        latents = sae_pooled_latents(sae, cache)
        tasks = one_vs_rest_tasks(cache.labels, cache.is_test, cache.classes)
        top = top_k_accuracy(latents, tasks, ks)
        for k in ks:
            accuracy = _mean(top[k].values())
            metrics[f"sae_top_{k}_test_accuracy_{family}"] = accuracy
            per_k[k].append(accuracy)
        if full_probe is not None:
            probes = full_probe_accuracy(
                latents, tasks, full_probe["cs"], full_probe["validation_fraction"]
            )
            accuracy = _mean(r["accuracy"] for r in probes.values())
            metrics[f"sae_test_accuracy_{family}"] = accuracy
            full.append(accuracy)
        log.info("%s: %.1f s", family, time.perf_counter() - started)
    for k in ks:
        metrics[f"sae_top_{k}_test_accuracy"] = _mean(per_k[k])
    if full:
        metrics["sae_test_accuracy"] = _mean(full)
    return metrics


# ----------------------------------------------------------------------------- tables


def probing_table(result_paths: list[str | Path]) -> pd.DataFrame:
    """One row per checkpoint: run identity and its sparse-probing metrics."""
    rows = []
    for path in result_paths:
        result = json.loads(Path(path).read_text())
        rows.append({**result["run"], **result["metrics"]})
    frame = pd.DataFrame(rows)
    if len(frame):
        frame = frame.sort_values(list(REAL_RUN_KEYS)).reset_index(drop=True)
    return frame
