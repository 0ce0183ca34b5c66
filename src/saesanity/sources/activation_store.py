"""Tokenised windows and sharded on-disk activation dumps.

Layout of one store (a directory):

    manifest.json        model, revision/sha256, layer, hook, context, dtype,
                         d_model, token count, normalisation constant, and per
                         shard: file, token count, sha256
    shard_00000.npy ...  [tokens, d_model] arrays, one per `windows_per_shard`
                         consecutive windows (so an interrupted extraction
                         resumes at the first missing shard)

BOS: position 0 of every window is the BOS token, whose residual norm is an
outlier by two orders of magnitude (SmolLM2-135M layer 14: ~25,000 vs ~210 for
other tokens). It carries no information about the text and would dominate the
SAE's loss, so it is left out of the store (as SAELens' `exclude_special_tokens`
and dictionary_learning do) and kept clean when a reconstruction is spliced in.

Other outliers: a few further tokens (0.03% of them here, mostly the first token
after BOS, acting as attention sinks) have BOS-like norms, up to ~175x the
median, and so hold ~80% of the stored activations' variance: explained variance
would measure little else. Readers therefore leave out tokens whose norm exceeds
`outlier_factor` x the store's median norm (config `outlier_norm_factor`); the
shards keep them, so the factor can change without re-extracting.

Training reads the store through `ActivationStore.batch(step, batch_size)`:
a seeded shuffle over groups of `shuffle_shards` shards per epoch, so a batch is
a pure function of (seed, step) - which makes training resumable - and memory
holds at most two groups, whatever the store's size.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from saesanity.core.checkpoint import atomic_write, finite_or_null, write_json
from saesanity.core.data import derive_seed
from saesanity.offline.fetch import sha256_of
from saesanity.sources.language_model import LanguageModel

log = logging.getLogger(__name__)

STORE_DTYPES = ("float32", "float16")


class StoreError(ValueError):
    """A store that is missing, corrupted or does not match what was asked for."""


def tokenise_windows(
    texts: Iterable[str],
    tokenizer,
    context: int,
    bos_token_id: int,
    max_windows: int,
    separator_token_id: int | None = None,
) -> np.ndarray:
    """Fixed windows [n, context] (int32): BOS, then `context - 1` tokens of the
    concatenated documents (each followed by `separator_token_id`, e.g. EOS).

    Documents are consumed in the given order (the corpus is already shuffled
    with its seed) until `max_windows` windows are full; the last partial
    window is dropped.
    """
    if context < 2:
        raise ValueError(f"model.context = {context}: expected >= 2")
    body = context - 1
    needed = max_windows * body
    stream: list[int] = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        stream.extend(ids)
        if separator_token_id is not None:
            stream.append(separator_token_id)
        if len(stream) >= needed:
            break
    n_windows = min(max_windows, len(stream) // body)
    if n_windows == 0:
        raise ValueError(f"the corpus gave {len(stream)} tokens, fewer than one window ({body})")
    windows = np.empty((n_windows, context), dtype=np.int32)
    windows[:, 0] = bos_token_id
    windows[:, 1:] = np.asarray(stream[: n_windows * body], dtype=np.int32).reshape(n_windows, body)
    return windows


def save_array(array: np.ndarray, path: str | Path) -> None:
    """Atomic np.save (through a handle: np.save appends ".npy" to other names)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)

    atomic_write(path, write)


def save_windows(windows: np.ndarray, path: str | Path) -> None:
    save_array(windows, path)


def load_windows(path: str | Path) -> np.ndarray:
    try:
        windows = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise StoreError(f"{path}: cannot read token windows ({error})") from error
    if windows.ndim != 2 or windows.dtype != np.int32:
        raise StoreError(f"{path}: expected an int32 [windows, context] array, got {windows.shape}")
    return windows


def _shard_name(index: int) -> str:
    return f"shard_{index:05d}.npy"


def extraction_identity(model: LanguageModel, dtype: str, exclude_bos: bool) -> dict:
    """Everything besides the token windows that a stored activation depends on: what
    model was loaded (its files' checksums, not only its name), the hook, the dtypes."""
    return {
        "model": model.spec.name,
        "loaded": model.loaded,
        "model_dtype": model.spec.dtype,
        "precision": model.precision,
        "layer": model.spec.layer,
        "hook": model.spec.hook_name,
        "d_model": model.d_model,
        "dtype": dtype,
        "exclude_bos": exclude_bos,
    }


def _windows_sha256(rows: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rows, dtype=np.int32).tobytes()).hexdigest()


def extract_activations(
    model: LanguageModel,
    windows: np.ndarray,
    out_dir: str | Path,
    windows_per_shard: int,
    dtype: str = "float32",
    exclude_bos: bool = True,
    extra_manifest: dict | None = None,
) -> dict:
    """Run `model` over `windows` (stopping at the hooked layer) and write shards
    plus the manifest (last, atomically: a store without manifest is incomplete).

    A killed run resumes: `extraction.json` records, per finished shard, the sha256 of
    its token windows and of its file, and the identity of everything else it was
    made from (`extraction_identity`). A shard is reused only when all three still
    match; anything else in the folder (another layer, corpus, model, a corrupted
    file) is extracted again."""
    if dtype not in STORE_DTYPES:
        raise ValueError(f"activations.dtype = {dtype!r}: expected one of {STORE_DTYPES}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    first = 1 if exclude_bos else 0
    tokens_per_window = windows.shape[1] - first
    n_shards = math.ceil(len(windows) / windows_per_shard)
    batch = model.spec.batch_size
    identity = extraction_identity(model, dtype, exclude_bos)
    record = _read_extraction_record(out_dir, identity)
    _remove_unrecorded_shards(out_dir, record)
    shards = []
    sum_sq = 0.0
    sum_sq_bos = 0.0
    n_tokens = 0
    progress = tqdm(total=len(windows), desc="extract", unit="window", mininterval=10)
    for index in range(n_shards):
        rows = windows[index * windows_per_shard : (index + 1) * windows_per_shard]
        path = out_dir / _shard_name(index)
        windows_sha256 = _windows_sha256(rows)
        expected_shape = (len(rows) * tokens_per_window, model.d_model)
        entry = record["shards"].get(path.name)
        activations = None
        if entry is not None and entry["windows_sha256"] == windows_sha256:
            activations = _existing_shard(path, expected_shape, dtype, entry["sha256"])
        if activations is None:
            parts, bos_parts = [], []
            for start in range(0, len(rows), batch):
                tokens = torch.from_numpy(rows[start : start + batch]).long()
                residual = model.residual(tokens)
                bos_parts.append(residual[:, 0].pow(2).sum(-1).double())
                parts.append(residual[:, first:].reshape(-1, model.d_model))
            activations = torch.cat(parts).numpy().astype(dtype)
            bad = int((~np.isfinite(activations)).sum())
            if bad:
                raise StoreError(
                    f"{path}: the model produced {bad} non-finite activations (NaN or inf) "
                    f"at {model.spec.hook_name} in windows {index * windows_per_shard}-"
                    f"{index * windows_per_shard + len(rows) - 1}; try model.dtype: float32"
                )
            save_array(activations, path)
            entry = {
                "windows_sha256": windows_sha256,
                "sha256": sha256_of(path),
                "bos_sum_squared_norm": float(torch.cat(bos_parts).sum()),
            }
            record["shards"][path.name] = entry
            write_json(out_dir / EXTRACTION_RECORD, record)
        progress.update(len(rows))
        values = torch.from_numpy(activations).double()
        sum_sq += float(values.pow(2).sum())
        sum_sq_bos += entry["bos_sum_squared_norm"]
        n_tokens += len(values)
        shards.append({"file": path.name, "tokens": len(values), "sha256": entry["sha256"]})
    progress.close()
    for stale in sorted(set(record["shards"]) - {shard["file"] for shard in shards}):
        (out_dir / stale).unlink(missing_ok=True)  # a shard of a longer, earlier store
        del record["shards"][stale]
    write_json(out_dir / EXTRACTION_RECORD, record)
    mean_sq_norm = sum_sq / n_tokens
    manifest = {
        **(extra_manifest or {}),
        "model": model.spec.name,
        "loaded_model": model.loaded,
        "layer": model.spec.layer,
        "hook": model.spec.hook_name,
        "context": int(windows.shape[1]),
        "dtype": dtype,
        "precision": model.precision,  # of the forward passes that made it
        "d_model": model.d_model,
        "windows": len(windows),
        "tokens": n_tokens,
        "exclude_bos": exclude_bos,
        "windows_per_shard": windows_per_shard,
        # Normalisation constant: inputs are scaled by input_scale so that
        # E||x||^2 = 1 over the stored (non-BOS) tokens.
        "mean_squared_norm": mean_sq_norm,
        "input_scale": 1.0 / math.sqrt(mean_sq_norm),
        # Documented, not used: how far BOS is from the rest.
        "bos_mean_squared_norm": sum_sq_bos / len(windows),
        "shards": shards,
    }
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    write_json(out_dir / "manifest.json", manifest)
    return manifest


EXTRACTION_RECORD = "extraction.json"


def manifest_checksum(manifest: dict) -> str:
    """sha256 of a manifest's content without its own checksum: a manifest edited by
    hand after extraction no longer matches it."""
    content = {key: value for key, value in manifest.items() if key != "manifest_sha256"}
    # As written to disk (write_json turns NaN into null), so a read-back manifest matches.
    text = json.dumps(finite_or_null(content), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _read_extraction_record(out_dir: Path, identity: dict) -> dict:
    """The record of shards already extracted with `identity`; a fresh one otherwise."""
    path = out_dir / EXTRACTION_RECORD
    fresh = {"identity": identity, "shards": {}}
    if not path.exists():
        return fresh
    try:
        record = json.loads(path.read_text())
    except ValueError:
        log.warning("%s is unreadable: extracting every shard again", path)
        return fresh
    if record.get("identity") != identity:
        old = record.get("identity") or {}
        changed = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
        log.warning(
            "%s: the existing shards were extracted with other inputs (%s differ): "
            "extracting every shard again",
            out_dir,
            ", ".join(changed),
        )
        return fresh
    return record


def _remove_unrecorded_shards(out_dir: Path, record: dict) -> None:
    """Shard files the record does not vouch for (another model, layer, corpus, or an
    extraction from before records existed) are removed before anything is written."""
    for path in sorted(out_dir.glob("shard_*.npy")):
        if path.name not in record["shards"]:
            path.unlink()
    write_json(out_dir / EXTRACTION_RECORD, record)


def _existing_shard(
    path: Path, shape: tuple[int, int], dtype: str, sha256: str
) -> np.ndarray | None:
    """The shard at `path` if it is exactly the file that was recorded (its sha256), of
    the expected shape; None (extract it again) otherwise."""
    if not path.exists() or sha256_of(path) != sha256:
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return array if array.shape == shape and array.dtype == np.dtype(dtype) else None


MANIFEST_KEYS = ("d_model", "dtype", "shards", "tokens", "layer", "hook", "model")


def check_manifest(manifest: dict, path: str | Path) -> None:
    """A manifest that is whole and as extraction wrote it (not edited by hand), or a
    StoreError naming the file and the key. Cheap: reads no shard."""
    if not isinstance(manifest, dict):
        raise StoreError(f"{path}: expected a JSON object")
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise StoreError(f"{path}: missing {', '.join(missing)}; delete the store to re-extract")
    recorded = manifest.get("manifest_sha256")
    if recorded is not None and recorded != manifest_checksum(manifest):
        raise StoreError(
            f"{path}: its content does not match its manifest_sha256 (edited after "
            "extraction?); delete the store's folder to extract it again"
        )
    if not isinstance(manifest["d_model"], int) or manifest["d_model"] <= 0:
        raise StoreError(f"{path}: d_model = {manifest['d_model']!r}, expected a positive int")


def read_manifest(path: str | Path) -> dict:
    """A store's manifest, checked with `check_manifest`."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StoreError(f"{path}: missing or unreadable ({error})") from error
    check_manifest(manifest, path)
    return manifest


class ActivationStore:
    """Reads a store; `batch(step, batch_size)` is a deterministic shuffled stream.

    `outlier_factor`: tokens whose activation norm exceeds `outlier_factor` times
    the store's median norm are left out (see the module docstring); None keeps
    every stored token. The normalisation constant `input_scale` (E||x||^2 = 1)
    is computed over the tokens kept.
    """

    def __init__(
        self,
        path: str | Path,
        seed: int = 0,
        shuffle_shards: int = 4,
        verify: bool = True,
        expect: dict | None = None,
        outlier_factor: float | None = None,
    ):
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        self.manifest = read_manifest(manifest_path)
        for key, value in (expect or {}).items():
            if self.manifest.get(key) != value:
                raise StoreError(
                    f"{manifest_path}: {key} = {self.manifest.get(key)!r}, expected {value!r} "
                    "(the store was extracted with another model/config; delete it to re-extract)"
                )
        self.d_in = int(self.manifest["d_model"])
        self.seed = seed
        self.shuffle_shards = max(1, shuffle_shards)
        # What a batch stream is made of: the stored data (the manifest names every
        # shard's sha256) and how it is read. Training resumes only on the same identity.
        self.identity = hashlib.sha256(
            json.dumps(
                {
                    "manifest": manifest_checksum(self.manifest),
                    "seed": seed,
                    "shuffle_shards": self.shuffle_shards,
                    "outlier_factor": outlier_factor,
                },
                sort_keys=True,
            ).encode()
        ).hexdigest()
        self._cache: dict[tuple[int, int], torch.Tensor] = {}
        self._keep: list[np.ndarray] | None = None
        self._scan(verify, outlier_factor)

    def _scan(self, verify: bool, outlier_factor: float | None) -> None:
        """One pass over the shards: checksums, shapes, norms, outlier masks, scale."""
        norms = []
        for shard in self.manifest["shards"]:
            if verify:
                self._check_sha256(shard)
            array = self._read_raw(shard)
            shard_norms = np.sqrt(np.square(array, dtype=np.float64).sum(1))
            if not np.isfinite(shard_norms).all():
                bad = int((~np.isfinite(array)).sum())
                raise StoreError(
                    f"{self.path / shard['file']}: {bad} non-finite values (NaN or inf) in "
                    f"{int((~np.isfinite(shard_norms)).sum())} of {len(array)} tokens; "
                    "delete the store to extract it again"
                )
            norms.append(shard_norms)
        all_norms = np.concatenate(norms)
        self.median_norm = float(np.median(all_norms))
        self.outlier_factor = outlier_factor
        if outlier_factor is not None:
            limit = outlier_factor * self.median_norm
            self._keep = [n <= limit for n in norms]
            kept = np.concatenate(self._keep)
        else:
            kept = np.ones(len(all_norms), dtype=bool)
        self.outliers_dropped = int((~kept).sum())
        self.shard_tokens = (
            [int(k.sum()) for k in self._keep] if self._keep else [len(n) for n in norms]
        )
        self.n_tokens = sum(self.shard_tokens)
        # E||x||^2 = 1 over the tokens the SAEs see (the manifest's constant covers all).
        self.input_scale = float(1.0 / np.sqrt(np.mean(np.square(all_norms[kept]))))

    def _check_sha256(self, shard: dict) -> None:
        path = self.path / shard["file"]
        if not path.exists():
            raise StoreError(f"{path}: shard listed in the manifest is missing")
        actual = sha256_of(path)
        if actual != shard["sha256"]:
            raise StoreError(
                f"{path}: sha256 {actual} does not match the manifest's {shard['sha256']} "
                "(corrupted or replaced shard)"
            )

    def verify(self) -> None:
        """Every shard exists, has the recorded sha256, shape and dtype."""
        for shard in self.manifest["shards"]:
            self._check_sha256(shard)
            self._read_raw(shard)

    def _read_raw(self, shard: dict) -> np.ndarray:
        path = self.path / shard["file"]
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise StoreError(f"{path}: unreadable shard ({error})") from error
        expected = (int(shard["tokens"]), self.d_in)
        if array.shape != expected or array.dtype != np.dtype(self.manifest["dtype"]):
            raise StoreError(
                f"{path}: shape {array.shape} dtype {array.dtype}, expected {expected} "
                f"{self.manifest['dtype']} (manifest)"
            )
        return array

    def _read_shard(self, shard: dict) -> np.ndarray:
        """A shard's kept tokens."""
        array = self._read_raw(shard)
        if self._keep is not None:
            array = array[self._keep[self.manifest["shards"].index(shard)]]
        return array

    # --- sequential reading (evaluation) ---
    def iter_batches(
        self, batch_size: int, max_tokens: int | None = None
    ) -> Iterator[torch.Tensor]:
        """Tokens in stored order, float32, at most `max_tokens` in all."""
        remaining = self.n_tokens if max_tokens is None else min(max_tokens, self.n_tokens)
        for shard in self.manifest["shards"]:
            array = torch.from_numpy(self._read_shard(shard)).float()
            for start in range(0, len(array), batch_size):
                if remaining <= 0:
                    return
                piece = array[start : start + min(batch_size, remaining)]
                remaining -= len(piece)
                yield piece

    # --- shuffled stream (training) ---
    def _groups(self, epoch: int) -> tuple[list[list[int]], list[int]]:
        order = np.random.default_rng(derive_seed(self.seed, f"store_epoch{epoch}")).permutation(
            len(self.shard_tokens)
        )
        groups = [
            [int(i) for i in order[g : g + self.shuffle_shards]]
            for g in range(0, len(order), self.shuffle_shards)
        ]
        ends = np.cumsum([sum(self.shard_tokens[i] for i in group) for group in groups]).tolist()
        return groups, ends

    def _group_tensor(self, epoch: int, group_index: int, group: list[int]) -> torch.Tensor:
        key = (epoch, group_index)
        if key not in self._cache:
            if len(self._cache) >= 2:  # bounded memory: the current and the previous group
                self._cache.pop(next(iter(self._cache)))
            array = np.concatenate([self._read_shard(self.manifest["shards"][i]) for i in group])
            rng = np.random.default_rng(derive_seed(self.seed, f"store_rows{epoch}_{group_index}"))
            self._cache[key] = torch.from_numpy(array[rng.permutation(len(array))]).float()
        return self._cache[key]

    def batch(self, step: int, batch_size: int) -> torch.Tensor:
        pieces = []
        position = step * batch_size
        end = position + batch_size
        while position < end:
            epoch, offset = divmod(position, self.n_tokens)
            groups, ends = self._groups(epoch)
            group_index = bisect.bisect_right(ends, offset)
            start = ends[group_index - 1] if group_index > 0 else 0
            rows = self._group_tensor(epoch, group_index, groups[group_index])
            take = min(end - position, ends[group_index] - offset)
            pieces.append(rows[offset - start : offset - start + take])
            position += take
        return torch.cat(pieces) if len(pieces) > 1 else pieces[0].clone()
