"""A researcher's own SAE, in SAELens's on-disk format, as a run of this workflow.

`read_saelens_sae` reads a directory as `SAE.save_model` writes it (`cfg.json` +
`sae_weights.safetensors`; architectures standard (ReLU), topk and jumprelu, which is
also how SAELens saves BatchTopK) and checks it, naming the file and field of every
problem. `sanity_overlay` turns what it says (model, hook, context, width) and its
measured L0 into the config of a sanity check: the three random baselines with the
SAE's architecture, width and L0, beside the SAE itself as the run variant "user".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from saesanity.core.architectures import make_sae
from saesanity.core.checkpoint import load_sae, save_sae, write_json
from saesanity.core.sae import SparseAutoencoder
from saesanity.evals.metrics import reconstruction_metrics
from saesanity.offline.fetch import sha256_of
from saesanity.sources.activation_store import ActivationStore
from saesanity.sources.language_model import HOOKS
from saesanity.studies.runs import USER_VARIANT

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
# SAELens inference architecture -> this workflow's (BatchTopK is saved as jumprelu).
ARCHITECTURES = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}


class UserSAEError(ValueError):
    """An SAE directory that cannot be used; the message names the file and field."""


@dataclass
class UserSAE:
    sae: SparseAutoencoder
    model_name: str
    hook_name: str
    layer: int
    hook: str  # resid_post / resid_pre / resid_mid
    context_size: int
    architecture: str  # this workflow's name (relu, topk, jumprelu, batchtopk)
    source: dict  # path and sha256 of the files read


def _field(cfg: dict, key: str):
    """A cfg.json value: SAELens 6 keeps model and hook under `metadata`, older files at
    the top level; both are read, and they must agree."""
    top, nested = cfg.get(key), (cfg.get("metadata") or {}).get(key)
    if top is not None and nested is not None and top != nested:
        raise UserSAEError(f"{CFG_FILE}: {key} = {top!r} but metadata.{key} = {nested!r}")
    return top if top is not None else nested


def parse_hook(hook_name: str, path: Path) -> tuple[int, str]:
    """`blocks.{L}.hook_{resid_post|resid_pre|resid_mid}` -> (L, kind)."""
    parts = hook_name.split(".")
    kind = parts[2].removeprefix("hook_") if len(parts) == 3 else ""
    if len(parts) != 3 or parts[0] != "blocks" or not parts[1].isdigit() or kind not in HOOKS:
        raise UserSAEError(
            f"{path / CFG_FILE}: hook_name = {hook_name!r}; expected a residual-stream hook "
            f"blocks.<layer>.hook_<{'|'.join(HOOKS)}>"
        )
    return int(parts[1]), kind


def read_saelens_sae(path: str | Path, baseline_architecture: str | None = None) -> UserSAE:
    """The SAE in `path` as this workflow's SparseAutoencoder (input scale 1: SAELens's
    layout has the input units folded in), with what its cfg.json says about it."""
    path = Path(path)
    cfg_path, weights_path = path / CFG_FILE, path / WEIGHTS_FILE
    if not path.is_dir():
        raise UserSAEError(
            f"{path}: not a directory (expected SAELens's {CFG_FILE} + {WEIGHTS_FILE})"
        )
    for file in (cfg_path, weights_path):
        if not file.is_file():
            raise UserSAEError(f"{file}: missing (SAELens's SAE.save_model writes it)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as error:
        raise UserSAEError(f"{cfg_path}: not valid JSON ({error})") from error
    saelens_architecture = cfg.get("architecture", "standard")
    if saelens_architecture not in ARCHITECTURES:
        raise UserSAEError(
            f"{cfg_path}: architecture = {saelens_architecture!r}; supported: "
            f"{sorted(ARCHITECTURES)} (SAELens saves BatchTopK as jumprelu)"
        )
    values = {}
    for key in ("d_in", "d_sae", "model_name", "hook_name", "context_size"):
        values[key] = _field(cfg, key)
        if values[key] is None:
            raise UserSAEError(f"{cfg_path}: {key} is missing (expected in metadata or at the top)")
    for key in ("d_in", "d_sae", "context_size"):
        if not isinstance(values[key], int) or values[key] <= 0:
            raise UserSAEError(f"{cfg_path}: {key} = {values[key]!r}, expected a positive integer")
    if cfg.get("normalize_activations", "none") != "none":
        raise UserSAEError(
            f"{cfg_path}: normalize_activations = {cfg['normalize_activations']!r}; only 'none' "
            "is supported (fold the scaling into the weights first)"
        )
    if cfg.get("rescale_acts_by_decoder_norm"):
        raise UserSAEError(f"{cfg_path}: rescale_acts_by_decoder_norm = true is not supported")
    if cfg.get("reshape_activations", "none") != "none":
        raise UserSAEError(f"{cfg_path}: reshape_activations must be 'none' (a residual stream)")
    layer, hook = parse_hook(values["hook_name"], path)
    d_in, d_sae = values["d_in"], values["d_sae"]

    try:
        tensors = {name: t.float() for name, t in load_file(str(weights_path)).items()}
    except Exception as error:  # safetensors raises its own error types
        raise UserSAEError(f"{weights_path}: unreadable ({error})") from error
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    if saelens_architecture == "jumprelu":
        shapes["threshold"] = (d_sae,)
    for name, shape in shapes.items():
        if name not in tensors:
            raise UserSAEError(f"{weights_path}: tensor {name} is missing")
        if tuple(tensors[name].shape) != shape:
            raise UserSAEError(
                f"{weights_path}: {name} has shape {tuple(tensors[name].shape)}, expected "
                f"{shape} from {CFG_FILE}'s d_in = {d_in}, d_sae = {d_sae}"
            )
        bad = int((~torch.isfinite(tensors[name])).sum())
        if bad:
            raise UserSAEError(f"{weights_path}: {name} has {bad} non-finite values")

    architecture = ARCHITECTURES[saelens_architecture]
    k = cfg.get("k") if architecture == "topk" else None
    if architecture == "topk" and (not isinstance(k, int) or not 0 < k <= d_sae):
        raise UserSAEError(f"{cfg_path}: k = {k!r}; a topk SAE needs an integer 1 <= k <= d_sae")
    sae = make_sae(architecture, d_in, d_sae, k=k)
    b_enc = tensors["b_enc"]
    if not cfg.get("apply_b_dec_to_input", True):
        # SAELens encodes x, this workflow x - b_dec: fold b_dec's image into b_enc.
        b_enc = b_enc + tensors["b_dec"] @ tensors["W_enc"]
    with torch.no_grad():
        sae.W_enc.copy_(tensors["W_enc"].T)
        sae.b_enc.copy_(b_enc)
        sae.W_dec.copy_(tensors["W_dec"])
        sae.b_dec.copy_(tensors["b_dec"])
        if architecture == "jumprelu":
            # SAELens's JumpReLU is ReLU(pre) * (pre > threshold): a negative threshold
            # acts as 0.
            sae.threshold.copy_(tensors["threshold"].clamp_min(0.0))
    metadata = cfg.get("metadata") or {}
    trained_as = baseline_architecture or metadata.get("saesanity_architecture") or architecture
    if trained_as == "matryoshka":
        trained_as = "batchtopk"
    return UserSAE(
        sae=sae,
        model_name=values["model_name"],
        hook_name=values["hook_name"],
        layer=layer,
        hook=hook,
        context_size=values["context_size"],
        architecture=trained_as,
        source={
            "path": str(path.resolve()),
            "cfg_sha256": sha256_of(cfg_path),
            "weights_sha256": sha256_of(weights_path),
            "saelens_architecture": saelens_architecture,
        },
    )


def import_user_sae(
    path: str | Path,
    weights_out: str | Path,
    config_out: str | Path,
    baseline_architecture: str | None = None,
) -> dict:
    """The SAE as a checkpoint of this workflow (sae.safetensors + sae.json), so every
    evaluation reads it like the baselines' checkpoints."""
    user = read_saelens_sae(path, baseline_architecture)
    info = {
        "model_name": user.model_name,
        "hook_name": user.hook_name,
        "context_size": user.context_size,
        "baseline_architecture": user.architecture,
        "source": user.source,
    }
    # The metadata the evaluations expect of a checkpoint (a user SAE is not trained here).
    metadata = {
        "user_sae": info,
        "train_config": None,
        "samples_seen": None,
        "steps": None,
        "stop_reason": "user SAE",
        "wall_seconds": 0.0,
    }
    save_sae(user.sae, weights_out, config_out, metadata)
    return info


def measure_user_sae(
    weights: str | Path,
    sae_config: str | Path,
    eval_store_dir: str | Path,
    eval_tokens: int,
    batch_size: int,
    out_json: str | Path,
    outlier_factor: float | None = None,
    store_expect: dict | None = None,
) -> dict:
    """The SAE's held-out L0, EV and dead fraction, measured as the evaluation measures
    every checkpoint (the same tokens and outlier rule): its L0 sets the baselines'."""
    sae = load_sae(weights, sae_config)
    store = ActivationStore(
        eval_store_dir, seed=0, outlier_factor=outlier_factor, expect=store_expect
    )
    if store.d_in != sae.d_in:
        raise UserSAEError(
            f"the SAE's d_in = {sae.d_in}, but the model's activations at its hook have "
            f"width {store.d_in} ({eval_store_dir})"
        )
    tokens = min(eval_tokens, store.n_tokens)
    metrics = reconstruction_metrics(sae, store, tokens, min(batch_size * 64, tokens))
    info = json.loads(Path(sae_config).read_text())["user_sae"]
    result = {**info, "metrics": metrics, "l0": metrics["l0"]}
    write_json(out_json, result)
    return result


def sanity_overlay(
    config: dict, user: UserSAE, l0: float, seeds: list[int], variants: dict[str, list[str]]
) -> dict:
    """The config changes that make the real case study a sanity check of `user`: the
    SAE's model, hook and context; its width; one L0 (its measured L0, rounded); the
    random baselines of its architecture over `seeds`; the SAE itself as run variant
    "user" (config `sanity.l0`)."""
    target_l0 = max(1, int(round(l0)))
    if target_l0 > user.sae.d_sae:
        raise UserSAEError(f"measured L0 {l0:.1f} exceeds d_sae = {user.sae.d_sae}")
    model = dict(config["real"]["model"])
    if user.model_name != model["name"]:
        # Another model than the configured (embedded) one: load it from the hub.
        model.update(name=user.model_name, embedded=None, revision=None)
    model.update(layer=user.layer, hook=user.hook, context=user.context_size, d_model=user.sae.d_in)
    return {
        "real": {
            "model": model,
            "d_sae": user.sae.d_sae,
            "l0s": [target_l0],
            "table_l0": target_l0,
            "enabled_runs": ["sanity"],
            "runs": {
                "sanity": {
                    "architectures": [user.architecture],
                    "variants": variants,
                    "l0s": [target_l0],
                    "seeds": list(seeds),
                }
            },
        },
        "sanity": {"l0": target_l0, "measured_l0": l0},
    }


def l0_matched(baseline_l0: float, target: float, tolerance: float) -> bool:
    """Whether a baseline's held-out L0 is within `tolerance` (relative) of the SAE's."""
    return math.isfinite(baseline_l0) and abs(baseline_l0 - target) <= tolerance * target


def sanity_notes(
    metrics, measured: dict, sanity: dict, training: dict
) -> tuple[list[str], list[str]]:
    """What the report must say beside the verdicts: the SAE read, how the baselines
    were trained, and whether each baseline's held-out L0 matched the SAE's. Returns
    (notes, baselines whose L0 is outside the tolerance)."""
    source = measured["source"]
    l0, tolerance = float(measured["l0"]), float(sanity["l0_tolerance"])
    steps = int(training["max_samples"]) // int(training["batch_size"])
    notes = [
        f"SAE: {source['path']} (SAELens {source['saelens_architecture']}; weights sha256 "
        f"{source['weights_sha256'][:12]}), {measured['model_name']} {measured['hook_name']}, "
        f"context {measured['context_size']}.",
        f"Its held-out L0 is {l0:.1f} and EV {measured['metrics']['explained_variance']:.3f}; "
        f"the baselines ({measured['baseline_architecture']}) train at target L0 "
        f"{int(sanity['l0'])}, seeds {sanity['seeds']}.",
        f"Baselines train {steps} steps of {training['batch_size']} activations at lr "
        f"{training['lr']} (the workflow's real.training). The SAE's own training is "
        "unknown to this check: baselines trained longer can come closer to it.",
    ]
    unmatched = []
    baselines = metrics[metrics["variant"] != USER_VARIANT]
    for (variant, init), group in baselines.groupby(["variant", "init"]):
        mean = float(group["l0"].mean())
        if not l0_matched(mean, l0, tolerance):
            unmatched.append(f"{variant}/{init}")
        state = "matched" if f"{variant}/{init}" not in unmatched else "NOT matched"
        notes.append(
            f"{variant}/{init}: held-out L0 {mean:.1f} - {state} within {tolerance:.0%} of "
            f"the SAE's."
        )
    return notes, unmatched
