"""AutoInterp: explain SAE latents with an LLM and score the explanations by detection.

The study's interpretability evaluation (PAPER_PROTOCOL.md, "AutoInterp"), after
SAEBench and delphi (anchor_protocols.md, section 4):

1. Contexts. The held-out token windows are cut into short non-overlapping contexts
   (delphi's windows). A latent's activation in a context is its largest activation
   over the context's tokens; a context "activates" the latent when that is > 0 and is
   "non-activating" when every token's activation is exactly 0 (checked, not assumed).
2. Latents. `latents` live latents (firing frequency >= `dead_below` over the held-out
   tokens) with enough activating contexts are drawn by a seeded permutation; a larger
   `latents` keeps the earlier draws (so 8 -> 200 reuses the first 8).
3. Explanation. The `explain` top-activating contexts, with the tokens where the latent
   fires marked `<<...>>`, go to the judge, which writes a one-sentence description.
4. Detection. A disjoint test set: up to `detect_activating` other activating contexts
   at evenly spaced activation ranks (spread over the quantiles) plus up to
   `detect_non_activating` random non-activating contexts, shown one at a time and
   unmarked, with the description. The judge's yes/no logit margin is read for each.
5. Score. Small judges lean towards "yes" or "no" as a whole, so the decision is
   calibrated: the contexts with the `n_activating` largest margins are predicted to
   fire (the known share of positives). Accuracy of that decision is the score; the
   uncalibrated accuracy (margin > 0) and the AUROC of the margins are kept beside it.

Every prompt, description and margin is appended to a progress JSONL, one line per
latent, so a killed run resumes at the next latent and any score can be audited.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from saesanity.core.checkpoint import atomic_write, load_sae, write_json
from saesanity.evals.judges import Judge, make_judge
from saesanity.offline.fetch import sha256_of
from saesanity.sources.activation_store import load_windows
from saesanity.sources.language_model import ModelSpec, load_tokenizer
from saesanity.studies.runs import REAL_RUN_KEYS, real_run_from_path
from saesanity.studies.synthetic import write_csv

log = logging.getLogger(__name__)

# Per-checkpoint summary columns registered in the per-L0 metric table.
AUTOINTERP_METRICS = ["autointerp_score", "autointerp_auroc"]


@dataclass(frozen=True)
class ContextSettings:
    """`autointerp.contexts` in config."""

    tokens: int = 16  # tokens per context
    explain: int = 15  # top-activating contexts shown to the explainer
    detect_activating: int = 50
    detect_non_activating: int = 50
    min_activating: int = 20  # a latent needs this many activating contexts to be drawn
    mark_fraction: float = 0.01  # mark tokens above this fraction of the latent's max

    def __post_init__(self) -> None:
        for name in ("tokens", "explain", "detect_activating", "detect_non_activating"):
            if getattr(self, name) < 1:
                raise ValueError(f"autointerp.contexts.{name} = {getattr(self, name)}: need >= 1")
        if self.min_activating < self.explain + 1:
            raise ValueError(
                f"autointerp.contexts.min_activating = {self.min_activating}: need at least "
                f"explain + 1 = {self.explain + 1} (explanation plus one detection context)"
            )
        if not 0 <= self.mark_fraction < 1:
            raise ValueError(
                f"autointerp.contexts.mark_fraction = {self.mark_fraction}: need 0 <= x < 1"
            )


# --------------------------------------------------------------- prompts
EXPLAIN_SYSTEM = (
    "We are studying neurons in a neural network. You see short texts in which the tokens "
    "where one neuron fires are marked with << and >>. Find what the marked tokens have in "
    "common and describe it in a few words, for example: 'names of animals', 'the word "
    "\"the\"', 'closing brackets', 'verbs in the past tense', 'words about money'. Reply "
    "with the description only."
)
DETECT_SYSTEM = "You answer questions about short texts with Yes or No only."


def explain_messages(contexts: Sequence[str]) -> list[dict]:
    texts = "\n".join(f"Text {i + 1}: {text}" for i, text in enumerate(contexts))
    user = f"{texts}\n\nWhat do the marked tokens have in common?"
    return [{"role": "system", "content": EXPLAIN_SYSTEM}, {"role": "user", "content": user}]


def detect_messages(description: str, context: str) -> list[dict]:
    # Asked as "does this text contain <description>?", which small judges answer better
    # than "does the neuron fire?", and after the text (AUROC 0.81 vs 0.62 for a planted
    # digit latent with the offline judge, the question first; docs/autointerp.md).
    user = f"Text: {context}\n\nDoes this text contain {description}?"
    return [{"role": "system", "content": DETECT_SYSTEM}, {"role": "user", "content": user}]


def clean_description(text: str) -> str:
    """The explainer's sentence without a restated preamble ("The neuron activates on")."""
    text = text.strip().split("\n")[0].replace("<<", "").replace(">>", "").strip().strip("'\"")
    lowered = text.lower()
    preambles = ("the neuron activates on", "activates on", "the marked tokens are", "they are")
    for preamble in preambles:
        at = lowered.find(preamble)
        if 0 <= at < 20:
            text = text[at + len(preamble) :].strip(" :,")
            break
    text = text.rstrip(".")
    # Lower-case a capitalised first word ("Numbers"), not an acronym ("HTML tags").
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        text = text[0].lower() + text[1:]
    return text or "(empty description)"


def render_context(token_texts: Sequence[str], activations: np.ndarray | None, limit: float) -> str:
    """A context as text; tokens with activation > `limit` are wrapped in << >>, with
    neighbouring marked tokens merged into one span and leading spaces kept outside."""
    pieces: list[str] = []
    open_span = False
    for index, text in enumerate(token_texts):
        # A whitespace-only token (newline) would show as an empty "<<>>": left unmarked.
        marked = activations is not None and float(activations[index]) > limit and text.strip()
        if marked and not open_span:
            stripped = text.lstrip()
            pieces.append(text[: len(text) - len(stripped)] + "<<" + stripped)
            open_span = True
        elif not marked and open_span:
            pieces.append(">>" + text)
            open_span = False
        else:
            pieces.append(text)
    if open_span:
        pieces.append(">>")
    return "".join(pieces).replace("\n", " ").strip()


# --------------------------------------------------------------- contexts
@dataclass
class Contexts:
    """The held-out text cut into contexts: token ids [K, T] and each token's text."""

    tokens: np.ndarray  # [K, T] int
    token_texts: list[list[str]]  # [K][T]

    def __len__(self) -> int:
        return len(self.tokens)

    def text(self, index: int, activations: np.ndarray | None = None, limit: float = 0.0) -> str:
        return render_context(self.token_texts[index], activations, limit)


def cut_contexts(
    windows: np.ndarray, tokens_per_context: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-overlapping contexts of the windows' bodies (BOS at position 0 left out).

    Returns (context token ids [K, T], and for each context its window index and first
    position in the window body), so activations [W, C - 1, ...] map onto contexts.
    """
    body = windows[:, 1:]
    per_window = body.shape[1] // tokens_per_context
    if per_window == 0:
        raise ValueError(
            f"autointerp.contexts.tokens = {tokens_per_context}: longer than a window's "
            f"{body.shape[1]} tokens (real.model.context - 1)"
        )
    used = body[:, : per_window * tokens_per_context]
    context_tokens = used.reshape(len(windows) * per_window, tokens_per_context)
    window_index = np.repeat(np.arange(len(windows)), per_window)
    start = np.tile(np.arange(per_window) * tokens_per_context, len(windows))
    return context_tokens, window_index, start


def token_texts(tokenizer, context_tokens: np.ndarray) -> list[list[str]]:
    """Each token decoded on its own (so activations line up with text pieces)."""
    vocabulary = {int(t): tokenizer.decode([int(t)]) for t in np.unique(context_tokens)}
    return [[vocabulary[int(t)] for t in row] for row in context_tokens]


def _encoded_windows(encode, activations, tokens_per_context: int, batch_windows: int):
    """Per batch of windows: (first window, latent activations [contexts, T, d_sae])."""
    n_windows, body, _ = activations.shape
    per_window = body // tokens_per_context
    used = per_window * tokens_per_context
    for start in range(0, n_windows, batch_windows):
        chunk = torch.from_numpy(np.ascontiguousarray(activations[start : start + batch_windows]))
        x = chunk[:, :used].reshape(chunk.shape[0] * used, -1).float()
        with torch.no_grad():
            acts = encode(x)
        yield start, acts.reshape(chunk.shape[0] * per_window, tokens_per_context, -1)


def latent_statistics(
    encode, activations, tokens_per_context: int, usable: np.ndarray, batch_windows: int = 32
) -> tuple[np.ndarray, np.ndarray, int]:
    """Over the usable contexts of hook activations [W, C - 1, d] (an array or
    StoreWindows), with `encode` mapping raw [N, d] to latent activations [N, d_sae]:
    per latent, tokens it fires on and contexts it activates; and the token count."""
    per_window = activations.shape[1] // tokens_per_context
    fire_count = activating = None
    n_tokens = 0
    for start, acts in _encoded_windows(encode, activations, tokens_per_context, batch_windows):
        keep = torch.from_numpy(usable[start * per_window : start * per_window + len(acts)])
        kept = acts[keep] > 0
        fired, active = kept.sum(dim=(0, 1)), kept.any(dim=1).sum(dim=0)
        fire_count = fired if fire_count is None else fire_count + fired
        activating = active if activating is None else activating + active
        n_tokens += int(keep.sum()) * tokens_per_context
    return fire_count.numpy(), activating.numpy(), n_tokens


def latent_token_activations(
    encode, activations, tokens_per_context: int, latents: Sequence[int], batch_windows: int = 32
) -> np.ndarray:
    """Per-token activations [K, T, L] of `latents` in every context."""
    columns = list(latents)
    parts = [
        acts[:, :, columns].numpy()
        for _, acts in _encoded_windows(encode, activations, tokens_per_context, batch_windows)
    ]
    return np.concatenate(parts)


def outlier_contexts(
    activations, tokens_per_context: int, outlier_factor: float | None, batch_windows: int = 64
) -> np.ndarray:
    """True for contexts holding a token whose norm exceeds `outlier_factor` x the median
    (attention sinks: the training store leaves them out, so the SAEs never saw them)."""
    n_windows, body, _ = activations.shape
    per_window = body // tokens_per_context
    if outlier_factor is None:
        return np.zeros(n_windows * per_window, dtype=bool)
    norms = np.concatenate(
        [
            np.sqrt(np.square(activations[start : start + batch_windows], dtype=np.float64).sum(-1))
            for start in range(0, n_windows, batch_windows)
        ]
    )
    too_large = norms > outlier_factor * float(np.median(norms))
    used = too_large[:, : per_window * tokens_per_context]
    return used.reshape(n_windows * per_window, tokens_per_context).any(axis=1)


# --------------------------------------------------------------- latent selection
def draw_latents(
    activating: np.ndarray,
    fire_count: np.ndarray,
    n_tokens: int,
    count: int,
    min_activating: int,
    dead_below: float,
    seed: int,
    usable_contexts: int | None = None,
    min_silent: int = 0,
) -> tuple[list[int], dict]:
    """`count` latents by a seeded permutation of the eligible ones: live (frequency >=
    `dead_below`), with >= `min_activating` activating contexts and, out of
    `usable_contexts`, >= `min_silent` where they never fire (a latent firing everywhere
    has no negatives to detect). Returns the latents and counts for the record."""
    frequency = fire_count / max(n_tokens, 1)
    live = frequency >= dead_below
    silent = (usable_contexts if usable_contexts is not None else len(activating)) - activating
    eligible = np.flatnonzero(live & (activating >= min_activating) & (silent >= min_silent))
    order = np.random.default_rng(seed).permutation(eligible)
    chosen = [int(i) for i in order[:count]]
    summary = {
        "latents_total": int(len(fire_count)),
        "latents_live": int(live.sum()),
        "latents_eligible": int(len(eligible)),
        "latents_drawn": len(chosen),
    }
    if len(chosen) < count:
        log.warning(
            "only %d latents are live with >= %d activating contexts; asked for %d",
            len(chosen),
            min_activating,
            count,
        )
    return chosen, summary


@dataclass(frozen=True)
class LatentSets:
    explain: list[int]  # context indices, strongest first
    activating: list[int]
    non_activating: list[int]


def split_contexts(
    latent_acts: np.ndarray, usable: np.ndarray, settings: ContextSettings, seed: int
) -> LatentSets:
    """Disjoint explanation / detection sets of one latent from its per-token
    activations [K, T]; only `usable` contexts (no outlier tokens) are considered."""
    context_max = latent_acts.max(axis=1)
    activating = np.flatnonzero((context_max > 0) & usable)
    # Non-activating: every token's activation is exactly zero (checked per token).
    silent = np.flatnonzero((latent_acts == 0).all(axis=1) & usable)
    ranked = activating[np.argsort(-context_max[activating], kind="stable")]
    explain = ranked[: settings.explain]
    rest = ranked[settings.explain :]
    # Evenly spaced ranks over the remaining activating contexts: strong to weak.
    n_positive = min(settings.detect_activating, len(rest))
    picks = np.unique(np.linspace(0, len(rest) - 1, n_positive).round().astype(int))
    positives = rest[picks] if n_positive else rest[:0]
    rng = np.random.default_rng(seed)
    n_negative = min(settings.detect_non_activating, len(silent))
    negatives = rng.choice(silent, size=n_negative, replace=False) if n_negative else silent[:0]
    return LatentSets(
        explain=[int(i) for i in explain],
        activating=[int(i) for i in positives],
        non_activating=[int(i) for i in sorted(negatives)],
    )


# --------------------------------------------------------------- scoring
def auroc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve (ties count half); NaN with one class only."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    positives, negatives = scores[labels], scores[~labels]
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan")
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positives) * len(negatives)))


def calibrated_predictions(margins: Sequence[float], n_positive: int) -> np.ndarray:
    """The `n_positive` contexts with the largest margins are predicted to fire (ties
    broken by order: a judge that says the same for everything scores chance)."""
    margins = np.asarray(margins, dtype=float)
    order = np.argsort(-margins, kind="stable")
    predicted = np.zeros(len(margins), dtype=bool)
    predicted[order[:n_positive]] = True
    return predicted


def detection_scores(labels: Sequence[int], margins: Sequence[float]) -> dict:
    labels = np.asarray(labels, dtype=bool)
    margins = np.asarray(margins, dtype=float)
    predicted = calibrated_predictions(margins, int(labels.sum()))
    return {
        "accuracy": float((predicted == labels).mean()),
        "accuracy_uncalibrated": float(((margins > 0) == labels).mean()),
        "auroc": auroc(labels, margins),
        "yes_fraction": float((margins > 0).mean()),
    }


def explain_and_score(
    contexts: Contexts,
    latent_acts: np.ndarray,
    usable: np.ndarray,
    judge: Judge,
    settings: ContextSettings,
    seed: int,
    max_explanation_tokens: int = 40,
    description: str | None = None,
) -> dict:
    """One latent, end to end. `latent_acts` [K, T] are its per-token activations over
    `contexts`. With `description` given, the explainer is skipped (controls)."""
    started = time.perf_counter()
    sets = split_contexts(latent_acts, usable, settings, seed)
    limit = settings.mark_fraction * float(latent_acts[sets.explain].max())
    marked = [contexts.text(i, latent_acts[i], limit) for i in sets.explain]
    record: dict = {"explain_contexts": sets.explain, "explain_texts": marked}
    if description is None:
        messages = explain_messages(marked)
        raw = judge.complete(messages, max_tokens=max_explanation_tokens)
        description = clean_description(raw)
        record.update(explain_prompt=messages, explain_raw=raw)
    record["description"] = description
    tests = [(i, 1) for i in sets.activating] + [(i, 0) for i in sets.non_activating]
    # A fixed shuffled order: no position tells the label.
    order = np.random.default_rng(seed + 1).permutation(len(tests))
    shown = [tests[position] for position in order]
    prompts = [detect_messages(description, contexts.text(index)) for index, _ in shown]
    # One at a time for the in-process judge (prefix cache); HTTP judges answer in parallel.
    many = getattr(judge, "yes_no_margins", None)
    results = many(prompts) if many else [judge.yes_no_margin(m) for m in prompts]
    answers = [
        {
            "context": index,
            "label": label,
            "activation": float(latent_acts[index].max()),
            "text": messages[-1]["content"],
            "margin": margin,
            "answer": answer,
        }
        for (index, label), messages, (margin, answer) in zip(shown, prompts, results, strict=True)
    ]
    labels = [a["label"] for a in answers]
    margins = [a["margin"] for a in answers]
    record.update(
        detection=answers,
        n_activating=len(sets.activating),
        n_non_activating=len(sets.non_activating),
        **detection_scores(labels, margins),
        seconds=time.perf_counter() - started,
    )
    return record


# --------------------------------------------------------------- one checkpoint
def settings_fingerprint(settings: dict) -> str:
    """Records of a resumed run count only if made with the same settings and judge."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_progress(path: Path, fingerprint: str) -> dict[int, dict]:
    """Finished latents of an earlier (killed) run: complete lines with this fingerprint."""
    done: dict[int, dict] = {}
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line a kill cut short
        if record.get("fingerprint") == fingerprint:
            done[int(record["latent"])] = record
    return done


def append_progress(path: Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


class StoreWindows:
    """The held-out activation store read as [windows, context - 1, d] (BOS left out), in
    the order of the token windows it was extracted from. Shards are memory-mapped and
    only the windows sliced are read (the paper-scale store is ~9 GB)."""

    def __init__(self, store_dir: str | Path, n_windows: int, context: int):
        store_dir = Path(store_dir)
        manifest = json.loads((store_dir / "manifest.json").read_text())
        if not manifest.get("exclude_bos", True) or int(manifest["context"]) != context:
            raise ValueError(
                f"{store_dir}/manifest.json: expected context {context} with BOS left out, "
                f"got context {manifest['context']}, exclude_bos {manifest.get('exclude_bos')}"
            )
        if int(manifest["windows"]) != n_windows:
            raise ValueError(
                f"{store_dir}/manifest.json: {manifest['windows']} windows, but the token "
                f"windows file has {n_windows}"
            )
        self.body = context - 1
        self.per_shard = int(manifest["windows_per_shard"])
        self.shards = [
            np.load(store_dir / shard["file"], mmap_mode="r") for shard in manifest["shards"]
        ]
        self.shape = (n_windows, self.body, int(manifest["d_model"]))

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        pieces = []
        for window in range(start, stop):
            shard, row = divmod(window, self.per_shard)
            pieces.append(self.shards[shard][row * self.body : (row + 1) * self.body])
        if not pieces:
            return np.zeros((0, self.body, self.shape[2]), dtype=np.float32)
        return np.stack(pieces).astype(np.float32)


def evaluate_checkpoint(
    sae,
    windows: np.ndarray,
    activations,
    tokenizer,
    judge: Judge,
    settings: ContextSettings,
    latents: int,
    seed: int,
    progress_path: str | Path,
    fingerprint_settings: dict,
    dead_below: float = 1e-6,
    outlier_factor: float | None = None,
    max_explanation_tokens: int = 40,
) -> tuple[pd.DataFrame, list[dict], dict]:
    """AutoInterp of one checkpoint: per-latent scores (one row each), the full records
    (prompts, descriptions, answers) and a summary. Resumes from `progress_path`."""
    progress_path = Path(progress_path)
    fingerprint = settings_fingerprint(fingerprint_settings)
    context_tokens, _, _ = cut_contexts(windows, settings.tokens)
    usable = ~outlier_contexts(activations, settings.tokens, outlier_factor)
    fire_count, activating, n_tokens = latent_statistics(
        sae.encode, activations, settings.tokens, usable
    )
    chosen, summary = draw_latents(
        activating,
        fire_count,
        n_tokens,
        latents,
        settings.min_activating,
        dead_below,
        seed,
        usable_contexts=int(usable.sum()),
        min_silent=settings.detect_non_activating,
    )
    summary.update(contexts=int(len(context_tokens)), contexts_usable=int(usable.sum()))
    summary["tokens"] = n_tokens
    log.info("%s", summary)
    per_token = latent_token_activations(sae.encode, activations, settings.tokens, chosen)
    contexts = Contexts(context_tokens, token_texts(tokenizer, context_tokens))
    done = read_progress(progress_path, fingerprint)
    progress_path.parent.mkdir(parents=True, exist_ok=True)
    records = []
    for column, latent in enumerate(tqdm(chosen, desc="latents", mininterval=10)):
        if latent in done:
            records.append(done[latent])
            continue
        record = explain_and_score(
            contexts,
            per_token[:, :, column],
            usable,
            judge,
            settings,
            seed=seed * 1_000_003 + latent,
            max_explanation_tokens=max_explanation_tokens,
        )
        record = {"latent": latent, "fingerprint": fingerprint, **record}
        append_progress(progress_path, record)
        log.info(
            "latent %d: %.2f (auroc %.2f, %.0f s) %s",
            latent,
            record["accuracy"],
            record["auroc"],
            record["seconds"],
            record["description"],
        )
        records.append(record)
    table = latent_table(records)
    return table, records, summary


def latent_table(records: Iterable[dict]) -> pd.DataFrame:
    columns = [
        "latent",
        "accuracy",
        "accuracy_uncalibrated",
        "auroc",
        "yes_fraction",
        "n_activating",
        "n_non_activating",
        "seconds",
        "description",
    ]
    return pd.DataFrame([{c: r[c] for c in columns} for r in records], columns=columns)


def checkpoint_summary(table: pd.DataFrame) -> dict:
    """The per-checkpoint metrics: mean detection accuracy (the study's number) and AUROC."""
    return {
        "autointerp_score": float(table["accuracy"].mean()) if len(table) else float("nan"),
        "autointerp_score_std": float(table["accuracy"].std()) if len(table) > 1 else float("nan"),
        "autointerp_auroc": float(table["auroc"].mean()) if len(table) else float("nan"),
        "autointerp_latents": int(len(table)),
        "autointerp_seconds_per_latent": float(table["seconds"].mean())
        if len(table)
        else float("nan"),
    }


def settings_record(settings: ContextSettings, **extra) -> dict:
    return {**asdict(settings), **extra}


# --------------------------------------------------------------- workflow entry points
def score_checkpoint(
    weights: str | Path,
    sae_config: str | Path,
    windows_path: str | Path,
    store_dir: str | Path,
    model_spec: dict,
    params: dict,
    judge_path: str | Path | None,
    threads: int,
    outlier_factor: float | None,
    out_scores: str | Path,
    out_records: str | Path,
    out_summary: str | Path,
) -> dict:
    """The autointerp_score rule: one checkpoint's per-latent scores (CSV), every prompt
    and answer (JSONL) and its summary (JSON, run identity + metrics)."""
    started = time.perf_counter()
    sae = load_sae(weights, sae_config).eval()
    windows = load_windows(windows_path)
    activations = StoreWindows(store_dir, len(windows), windows.shape[1])
    tokenizer = load_tokenizer(ModelSpec(**model_spec))
    judge = make_judge(params["judge"], judge_path, threads)
    settings = ContextSettings(**params["contexts"])
    judge_loaded = time.perf_counter()
    table, records, summary = evaluate_checkpoint(
        sae,
        windows,
        activations,
        tokenizer,
        judge,
        settings,
        latents=int(params["latents"]),
        seed=int(params["seed"]),
        progress_path=Path(out_records).with_name("autointerp_progress.jsonl"),
        # Everything but the latent count: raising it keeps the latents already scored.
        fingerprint_settings={
            **{key: value for key, value in params.items() if key != "latents"},
            "weights_sha": _file_digest(weights),
            # and the data the contexts come from: a resumed run never mixes stores.
            "windows_sha": _file_digest(windows_path),
            "store_manifest_sha": _file_digest(Path(store_dir) / "manifest.json"),
        },
        dead_below=float(params["dead_below"]),
        outlier_factor=outlier_factor,
        max_explanation_tokens=int(params["explanation_max_tokens"]),
    )
    write_csv(table, out_scores)

    def write_records(tmp: Path) -> None:
        tmp.write_text("".join(json.dumps(record) + "\n" for record in records))

    atomic_write(out_records, write_records)
    result = {
        **real_run_from_path(weights),
        **checkpoint_summary(table),
        **summary,
        "judge": judge.name,
        "setup_seconds": judge_loaded - started,
        "wall_seconds": time.perf_counter() - started,
    }
    write_json(out_summary, result)
    return result


def _file_digest(path: str | Path) -> str:
    return sha256_of(path)[:16]


def collect_autointerp_metrics(summary_paths: list[str | Path]) -> pd.DataFrame:
    """The per-L0 table: run identity + AutoInterp metrics, one row per checkpoint."""
    columns = [*REAL_RUN_KEYS, *AUTOINTERP_METRICS, "autointerp_score_std"]
    columns += ["autointerp_latents", "autointerp_seconds_per_latent"]
    rows = [json.loads(Path(path).read_text()) for path in summary_paths]
    frame = pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=columns)
    return frame.sort_values(list(REAL_RUN_KEYS)).reset_index(drop=True)


def load_latent_scores(score_paths: list[str | Path]) -> pd.DataFrame:
    """Every latent's scores, tagged with its checkpoint's identity."""

    frames = []
    for path in score_paths:
        frame = pd.read_csv(path)
        for key, value in real_run_from_path(path).items():
            frame.insert(len(frame.columns), key, value)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
