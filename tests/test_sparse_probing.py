"""Sparse probing: the SAEBench protocol pieces, the offline dataset builders, and the
activation cache on the real embedded model."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from saesanity.core.architectures import make_sae
from saesanity.evals.probing_data import (
    FAMILIES,
    ProbingDataError,
    balanced_split,
    build_family,
    check_probing_config,
    clean_examples,
    hf_examples,
    load_hf_family,
)
from saesanity.evals.sparse_probing import (
    cache_activations,
    evaluate_checkpoint,
    full_probe_accuracy,
    load_cache,
    one_vs_rest_tasks,
    residual_baselines,
    sae_pooled_latents,
    save_cache,
    top_k_accuracy,
)
from saesanity.offline.pins import DEBIAN_INDEX

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"  # as conftest.CACHE (git-ignored)
DEFAULT_PROBING = yaml.safe_load((REPO / "config.yaml").read_text())["sparse_probing"]

SETTINGS = {
    "train_per_class": 40,
    "test_per_class": 20,
    "seed": 42,
    "sentiment_threshold": 1.0,
    "code_skip_chars": 150,
    "code_chunk_chars": 400,
    "code_chunks_per_file": 8,
    "debian_index": DEBIAN_INDEX,
    "product_per_source": DEFAULT_PROBING["product_per_source"],
}


# ----------------------------------------------------------------------------- protocol


def _labels(n_per_class: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(classes), n_per_class)
    is_test = np.tile(np.arange(n_per_class) >= 0.7 * n_per_class, classes)
    return labels, is_test


def test_tasks_are_balanced_one_vs_rest_with_disjoint_splits():
    labels, is_test = _labels(50, 5)
    tasks = one_vs_rest_tasks(labels, is_test, ["a", "b", "c", "d", "e"])
    assert [t.name for t in tasks] == ["a", "b", "c", "d", "e"]
    for c, task in enumerate(tasks):
        assert task.y_train.sum() * 2 == len(task.y_train)  # balanced
        assert task.y_test.sum() * 2 == len(task.y_test)
        assert (labels[task.train] == c).sum() == 35 and (labels[task.test] == c).sum() == 15
        assert not is_test[task.train].any() and is_test[task.test].all()
        assert ((labels[task.train] == c) == (task.y_train == 1)).all()
        # negatives come from every other class (ceil(35 / 4) = 9 sampled from each)
        assert set(labels[task.train][task.y_train == 0]) == set(range(5)) - {c}


def test_top1_finds_the_latent_that_equals_the_label_and_random_latents_are_chance():
    rng = np.random.default_rng(0)
    labels, is_test = _labels(60, 4)
    features = rng.random((len(labels), 200))
    informative = {c: 7 + 13 * c for c in range(4)}  # latent i fires exactly for class c
    for c, latent in informative.items():
        features[:, latent] = (labels == c).astype(float)
    tasks = one_vs_rest_tasks(labels, is_test, ["w", "x", "y", "z"])
    accuracy = top_k_accuracy(features, tasks, [1, 5])
    assert min(accuracy[1].values()) == 1.0
    assert min(accuracy[5].values()) == 1.0

    random_only = rng.random((len(labels), 200))
    chance = top_k_accuracy(random_only, tasks, [1])
    assert 0.35 < np.mean(list(chance[1].values())) < 0.65


def test_full_probe_picks_c_on_validation_and_separates_linear_data():
    rng = np.random.default_rng(1)
    labels, is_test = _labels(80, 3)
    directions = rng.normal(size=(3, 30))
    features = directions[labels] + rng.normal(scale=1.5, size=(len(labels), 30))
    tasks = one_vs_rest_tasks(labels, is_test, ["a", "b", "c"])
    result = full_probe_accuracy(features, tasks, [0.001, 0.1, 10.0], validation_fraction=0.2)
    for task_result in result.values():
        assert task_result["C"] in (0.001, 0.1, 10.0)
        assert task_result["accuracy"] > 0.8
    # one informative direction among noise: no single dimension carries it, so the
    # full-width probe beats the top-1 dimension probe
    top1 = top_k_accuracy(features, tasks, [1])[1]
    assert np.mean([r["accuracy"] for r in result.values()]) > np.mean(list(top1.values()))


# ----------------------------------------------------------------------------- datasets


def _frame(rows):
    return pd.DataFrame(rows, columns=["text", "label", "source", "group"])


def test_cleaning_drops_empty_duplicate_and_ambiguous_texts():
    frame = _frame(
        [
            ("  ", "a", "s", "g1"),
            ("same text", "a", "s", "g2"),
            ("Same text", "a", "s", "g3"),
            ("both labels", "a", "s", "g4"),
            ("both labels", "b", "s", "g5"),
            ("kept", "b", "s", "g6"),
        ]
    )
    cleaned, notes = clean_examples(frame)
    assert sorted(cleaned["text"]) == ["kept", "same text"]
    assert notes == {"empty": 1, "ambiguous_label": 2, "duplicates": 1}


def test_balanced_split_keeps_groups_whole_and_scales_down_small_classes():
    rows = [(f"a{i}", "a", "s", f"ga{i // 3}") for i in range(30)]
    rows += [(f"b{i}", "b", "s", f"gb{i // 2}") for i in range(12)]
    data, notes = balanced_split(_frame(rows), train_per_class=10, test_per_class=5, seed=0)
    counts = data.groupby(["split", "label"]).size()
    assert notes["scaled_down"] and notes["per_class"] == {"train": 8, "test": 4}
    assert (counts == pd.Series({("test", "a"): 4, ("test", "b"): 4, ("train", "a"): 8,
                                 ("train", "b"): 8})).all()  # fmt: skip
    train_groups = set(data[data.split == "train"].group)
    assert not train_groups & set(data[data.split == "test"].group)


@pytest.fixture(scope="module")
def built_families():
    """Every offline family, built from its pinned archives (kept in .cache for reruns)."""
    archives = CACHE / "probing_archives"
    return {family: build_family(family, SETTINGS, archives) for family in FAMILIES}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_builders_give_the_claimed_balanced_classes_without_leaks(built_families, family):
    data, manifest = built_families[family]
    claimed = sorted(FAMILIES[family].classes)
    assert sorted(data["label"].unique()) == claimed == sorted(manifest["classes"])
    assert (data["text"].str.strip().str.len() > 0).all()
    assert not data["text"].str.casefold().duplicated().any()
    train, test = data[data.split == "train"], data[data.split == "test"]
    assert not set(train.text) & set(test.text)
    assert not set(train.group) & set(test.group)  # no document in both splits
    per_class = manifest["split"]["per_class"]
    assert (train.groupby("label").size() == per_class["train"]).all()
    assert (test.groupby("label").size() == per_class["test"]).all()
    assert per_class["train"] >= 30 and per_class["test"] >= 15
    assert all(a["sha256"] for a in manifest["archives"])
    if family == "professions":  # the profession word is masked
        for label, text in zip(data.label, data.text, strict=True):
            assert not re.search(rf"\b{label}s?\b", text, re.I), text
    if family == "code":  # chunks start after the file's first 150 characters
        assert not data.text.str.contains(r"^<\?php|^#!|^<!DOCTYPE", regex=True).any()
    if family == "product":  # at most product_per_source packages of one source package
        assert data.groupby("group").size().max() <= SETTINGS["product_per_source"]
        assert (data.text.str.split().str.len() >= 20).all()
        assert not data.text.str.contains("transitional", case=False).any()


def test_hub_rows_are_converted_like_saebench_reads_them():
    """hf_examples on rows shaped as the hub serves them: europarl's per-pair configs
    with a translation dict, and github-code's first 150 characters skipped."""
    europarl = {"dataset": "Helsinki-NLP/europarl", "adapter": "europarl",
                "text_column": "translation", "label_column": "language",
                "classes": ["en", "fr", "de"]}  # fmt: skip
    rows = {
        "de-en": [{"translation": {"de": "Guten Tag.", "en": "Good day."}}],
        "en-fr": [{"translation": {"en": "Thank you.", "fr": "Merci."}},
                  {"translation": {"en": "Yes.", "fr": "Oui."}}],
    }  # fmt: skip
    frame = hf_examples("language", europarl, rows, SETTINGS)
    assert sorted(frame["label"]) == ["de", "en", "en", "en", "fr", "fr"]
    pair = frame[frame.group == "en-fr:1"].set_index("label")["text"].to_dict()
    assert pair == {"en": "Yes.", "fr": "Oui."}  # a sentence and its translation: one group
    code = {"dataset": "codeparrot/github-code", "text_column": "code",
            "label_column": "language", "classes": ["C", "Python"]}  # fmt: skip
    short, long = "x = 1\n" * 10, "#!/usr/bin/env python\n" + "y = 2\n" * 200
    rows = {"default": [{"code": short, "language": "Python"},
                        {"code": long, "language": "Python"},
                        {"code": long, "language": "Rust"}]}  # fmt: skip
    frame = hf_examples("code", code, rows, SETTINGS)
    assert list(frame["label"]) == ["Python"]  # too short and unknown classes dropped
    assert frame["text"].iloc[0] == long[150:]


def test_hub_source_offline_fails_naming_the_dataset_and_key(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hf = {"dataset": "fancyzhx/ag_news", "split": "train", "text_column": "text",
          "label_column": "label", "classes": [0, 1]}  # fmt: skip
    with pytest.raises(ProbingDataError, match=r"huggingface\.news.*fancyzhx/ag_news.*offline"):
        load_hf_family("news", hf, SETTINGS)


def test_config_errors_name_the_key():
    config = {"sparse_probing": {"classes": {"news": ["cooking"]}, "source": "offline",
                                 "families": ["news"], "huggingface": {}}}  # fmt: skip
    with pytest.raises(ProbingDataError, match=r"sparse_probing\.classes\.news.*cooking"):
        check_probing_config(config)
    config["sparse_probing"].update(classes={}, source="huggingface")
    with pytest.raises(ProbingDataError, match=r"sparse_probing\.huggingface.*news"):
        check_probing_config(config)


# ----------------------------------------------------------------------------- real model


def test_cache_and_checkpoint_evaluation_on_the_real_model(language_model, tmp_path):
    texts = {
        "positive": ["I love this camera, the pictures are great.", "Excellent, works well."],
        "negative": ["Terrible battery, broke in a week.", "Awful. Do not buy this phone."],
    }
    rows = []
    for label, examples in texts.items():
        for i, text in enumerate(examples * 3):
            rows.append({"text": f"{text} ({i})", "label": label,
                         "split": "test" if i >= 4 else "train"})  # fmt: skip
    data = pd.DataFrame(rows)
    cache = cache_activations(language_model, data, context=12, batch_tokens=40, outlier_factor=3.0)
    path = tmp_path / "cache.safetensors"
    save_cache(cache, path)
    cache = load_cache(path)
    assert cache.classes == ["negative", "positive"]
    assert cache.n_examples == len(data) and cache.is_test.sum() == 4
    # BOS is never kept: at most context - 1 tokens per example
    lengths = (cache.offsets[1:] - cache.offsets[:-1]).numpy()
    assert (lengths >= 1).all() and (lengths <= 11).all()
    assert cache.info["kept_tokens"] == int(cache.offsets[-1]) == len(cache.acts)
    assert cache.info["model_tokens"] - len(data) - cache.info["outlier_tokens_dropped"] == len(
        cache.acts
    )

    torch.manual_seed(0)
    sae = make_sae("topk", language_model.d_model, 64, k=4)
    with torch.no_grad():
        sae.W_enc.normal_()
        sae.input_scale.fill_(1.0 / float(cache.acts.norm(dim=1).median()))
    pooled = sae_pooled_latents(sae, cache, batch_tokens=7)  # batches split examples
    first = sae.encode(cache.acts[: lengths[0]]).mean(0).numpy()
    np.testing.assert_allclose(pooled[0], first, rtol=1e-5, atol=1e-6)
    full_probe = {"cs": [0.1, 1.0], "validation_fraction": 0.25}
    metrics = evaluate_checkpoint(sae, {"sentiment": cache}, ks=[1, 2], full_probe=full_probe)
    assert set(metrics) == {
        "sae_top_1_test_accuracy",
        "sae_top_2_test_accuracy",
        "sae_top_1_test_accuracy_sentiment",
        "sae_top_2_test_accuracy_sentiment",
        "sae_test_accuracy",
        "sae_test_accuracy_sentiment",
    }
    assert all(0.0 <= value <= 1.0 for value in metrics.values())
    baselines = residual_baselines({"sentiment": cache}, [1], [0.1, 1.0], 0.25)
    assert list(baselines["family"]) == ["sentiment", "all"]
    assert 0.0 <= baselines["llm_test_accuracy"].iloc[-1] <= 1.0


@pytest.mark.parametrize(
    "override, named",
    [
        ({"families": ["weather"]}, "weather"),
        ({"classes": {"news": ["sports", "cooking"]}}, "sparse_probing.classes.news"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
    ],
)
def test_bad_probing_config_fails_at_parse_time_naming_the_key(override, named, tmp_path):
    repo = Path(__file__).resolve().parents[1]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"sparse_probing": override}))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"),
               "--directory", str(tmp_path), "-n", "--configfile", str(repo / "config.yaml"),
               str(path), "--", "all"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0
    assert named in result.stdout + result.stderr, (result.stdout + result.stderr)[-3000:]
