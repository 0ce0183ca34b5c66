"""Config helpers of the AutoInterp rules (rules/autointerp.smk): which checkpoints,
each rule's slice of the config, and the checks that name a bad key."""

from __future__ import annotations

from saesanity.evals.autointerp import ContextSettings
from saesanity.offline.pins import judge_gguf
from saesanity.studies.runs import ConfigError, real_run_dir, real_table_l0

JUDGE_PATH = "resources/judge/judge.gguf"


def check_autointerp_config(config: dict, real_runs: list[dict]) -> None:
    section = config.get("autointerp")
    if not section or not section.get("enabled"):
        return
    try:
        ContextSettings(**section["contexts"])
    except (TypeError, ValueError) as error:
        raise ConfigError(f"config autointerp.contexts: {error}") from error
    l0 = real_table_l0(config)
    at_l0 = [run for run in real_runs if int(run["target_l0"]) == l0]
    for key in ("architectures", "variants"):
        wanted = section.get(key)
        present = sorted({run[key[:-1]] for run in at_l0})
        for value in wanted or []:
            if value not in present:
                raise ConfigError(
                    f"config autointerp.{key}: {value!r} has no checkpoint at the table's "
                    f"L0 {l0} (there: {present})"
                )
    if not autointerp_runs(config, real_runs):
        raise ConfigError(f"config autointerp: no enabled real run at the table's L0 {l0}")
    judge = section["judge"]
    if judge["backend"] not in judge:
        raise ConfigError(
            f"config autointerp.judge.backend = {judge['backend']!r}: autointerp.judge has no "
            f"{judge['backend']!r} section"
        )


def autointerp_runs(config: dict, real_runs: list[dict]) -> list[dict]:
    """The checkpoints AutoInterp evaluates: the enabled real runs at table 1's L0,
    narrowed by `autointerp.architectures` / `autointerp.variants` (null: all)."""
    section = config.get("autointerp") or {}
    if not section.get("enabled"):
        return []
    wanted = {key: set(section.get(key) or []) for key in ("architectures", "variants")}
    l0 = real_table_l0(config)
    return [
        run
        for run in real_runs
        if int(run["target_l0"]) == l0
        and (not wanted["architectures"] or run["architecture"] in wanted["architectures"])
        and (not wanted["variants"] or run["variant"] in wanted["variants"])
    ]


def run_files(runs: list[dict], name: str, target_l0: int | str | None = None) -> list[str]:
    return [
        f"{real_run_dir(run)}/{name}"
        for run in runs
        if target_l0 is None or int(run["target_l0"]) == int(target_l0)
    ]


def score_params(config: dict) -> dict:
    """What a checkpoint's scores depend on (Snakemake reruns them when it changes)."""
    section = config.get("autointerp") or {}
    if not section.get("enabled"):
        return {}
    judge = dict(section["judge"])
    backend = judge["backend"]
    return {
        "latents": section["latents"],
        "seed": section["seed"],
        "dead_below": section["dead_below"],
        "contexts": section["contexts"],
        "explanation_max_tokens": section["explanation_max_tokens"],
        "judge": {"backend": backend, backend: judge[backend]},
    }


def judge_label(config: dict) -> str:
    """Names the judge on figures: offline scores are not comparable with GPT-4o-mini's."""
    judge = config["autointerp"]["judge"]
    if judge["backend"] == "local":
        name = judge_gguf(judge["local"]["gguf"])["name"]
        return f"judge: {name} (offline; not comparable with GPT-4o-mini)"
    return f"judge: {judge['http']['model']} via {judge['http']['base_url']}"


def judge_inputs(config: dict) -> dict:
    """The fetched judge model, when the judge runs in-process."""
    return {"judge": JUDGE_PATH} if config["autointerp"]["judge"]["backend"] == "local" else {}
