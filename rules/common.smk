# Shared helpers: config checks, wildcard constraints, run lists.

import os

from saesanity.studies import real_length as saesanity_real_length
from saesanity.studies import runs as saesanity_runs
from saesanity.sources.activation_store import read_manifest
from saesanity.core.architectures import ARCHITECTURES
from saesanity.offline.pins import embedded_model, judge_gguf
from saesanity.core.training import INITS, RANDOM_INITS, VARIANTS
from saesanity.studies.runs import USER_INIT, USER_VARIANT

saesanity_runs.check_config(config)

# ------------------------------------------------------------ scheduler requests
# Every rule is one of five job kinds; its threads and resources (mem_mb, runtime in
# minutes, gpu) come from the config, so the same rules ask a laptop for CPUs and a SLURM
# cluster (config/paper.yaml) for GPUs: `threads: job_threads("train")` and
# `resources: **job_resources("train")`.
#   train     SAE training (synthetic, real, length study)
#   extract   language-model forward passes over the corpus (activations, splice reference)
#   evaluate  per-checkpoint evaluation (may run the language model)
#   prepare   downloads, corpus building, tokenising (CPU, network)
#   light     tables and figures
JOB_KINDS = ("train", "extract", "evaluate", "prepare", "light")


def job_threads(kind):
    """Threads of a job of `kind`: config `threads` (train/evaluate/extract), else one."""
    if kind not in JOB_KINDS:
        raise ValueError(f"job kind {kind!r} is not one of {JOB_KINDS}")
    return int(config["threads"].get(kind, 1))


def job_resources(kind):
    """Scheduler resources of a job of `kind`: config `resources.<kind>`."""
    if kind not in JOB_KINDS:
        raise ValueError(f"job kind {kind!r} is not one of {JOB_KINDS}")
    return dict(config["resources"][kind])


SYNTHETIC = config["synthetic"]
SYNTHETIC_RUNS = saesanity_runs.synthetic_runs(config)
RUN_DIR = saesanity_runs.SYNTHETIC_RUN_DIR
RUN_PATH = RUN_DIR.replace("results/synthetic/", "")  # for logs and benchmarks
# The length study's "stopped changing" rule: its tables and the synthetic figures' notes.
SETTLE_RULE = {
    "tolerance": config.get("length_study", {}).get("tolerance", 0.01),
    "relative_tolerance": config.get("length_study", {}).get("relative_tolerance", 0.0),
}


# Real runs add the researcher's own SAE (variant "user", init "none") in a sanity
# check; training rules constrain their wildcards to the trained variants.
wildcard_constraints:
    regime="|".join(sorted(SYNTHETIC["regimes"])),
    architecture="|".join(ARCHITECTURES),
    variant="|".join([*VARIANTS, USER_VARIANT]),
    init="|".join([*INITS, USER_INIT]),
    seed=r"\d+",


def synthetic_run_files(name, regime=None, study_only=False):
    """Per-run files (`name` in the run directory) of the enabled runs."""
    return [
        f"{saesanity_runs.run_dir(run)}/{name}"
        for run in SYNTHETIC_RUNS
        if (regime is None or run["regime"] == regime)
        and (not study_only or (run["variant"] == "trained" and run["init"] == "iso"))
    ]


def synthetic_regimes():
    return sorted({run["regime"] for run in SYNTHETIC_RUNS})


# ------------------------------------------------------------ real activations
REAL = config["real"]
REAL_LENGTH = REAL.get("length_study") or {"enabled": False}
REAL_RUNS = saesanity_runs.real_runs(config)
REAL_RUN_DIR = saesanity_runs.REAL_RUN_DIR
REAL_RUN_PATH = REAL_RUN_DIR.replace("results/real/", "")
REAL_MODEL_DIR = saesanity_runs.REAL_MODEL_DIR
REAL_MODEL_SPEC = saesanity_runs.real_model_spec(config)
REAL_EXTRACTION_SPEC = saesanity_runs.real_extraction_spec(config)
REAL_STORE_EXPECT = saesanity_runs.real_store_expect(config)
REAL_SAELENS_METADATA = {
    "model_name": REAL["model"]["name"],
    "hook_name": f"blocks.{REAL['model']['layer']}.hook_{REAL['model']['hook']}",
    "context_size": REAL["model"]["context"],
}
# Metric families joined per L0 (one CSV each: results/real/l0_<L0>/<family>.csv), each
# with the L0s it evaluates (None: every L0 of the grid), and table 1's metric columns:
# both follow from the config alone (saesanity.studies.runs).
REAL_METRIC_FAMILIES = saesanity_runs.real_metric_families(config)
REAL_TABLE1_METRICS = saesanity_runs.table1_metrics(config)
REAL_TABLE_TITLE = (
    f"{REAL['model']['name']} {REAL_SAELENS_METADATA['hook_name']}, "
    f"L0 = {saesanity_runs.real_table_l0(config)}"
)


wildcard_constraints:
    split="train|eval",
    target_l0=r"\d+",


def real_run_files(name, trained_only=False, target_l0=None):
    """Per-run files (`name` in the run directory) of the enabled real runs."""
    return [
        f"{saesanity_runs.real_run_dir(run)}/{name}"
        for run in REAL_RUNS
        if (not trained_only or run["variant"] == "trained")
        and (target_l0 is None or int(run["target_l0"]) == int(target_l0))
    ]


def real_metric_family_files(wildcards):
    """The per-family CSVs joined at one L0: the families that evaluate that L0."""
    l0 = int(wildcards.target_l0)
    return [
        f"results/real/l0_{l0}/{family}.csv"
        for family, l0s in REAL_METRIC_FAMILIES.items()
        if l0s is None or l0 in {int(value) for value in l0s}
    ]


def store_manifest(split):
    """Input function: a store's manifest, checked (whole, not edited since extraction)
    when the DAG is built, so a bad store stops the run before Snakemake deletes the
    outputs of the jobs that read it."""
    path = f"results/real/activations/{split}/manifest.json"

    def checked(wildcards):
        if os.path.exists(path):
            read_manifest(path)
        return path

    return checked


def real_run_l0s():
    return sorted({run["target_l0"] for run in REAL_RUNS})


def real_model_inputs(wildcards):
    """The converted embedded model, when the config uses one (hub models have none)."""
    return {"model_dir": REAL_MODEL_DIR} if REAL["model"].get("embedded") else {}


def real_corpus_inputs(wildcards):
    if REAL["corpus"]["source"] == "offline":
        return {"archives": "resources/corpus/archives/fetch_manifest.json"}
    return {}


def real_windows(split):
    """Windows per split: enough for the configured token counts (BOS excluded)."""
    tokens = REAL["activations"][f"{split}_tokens"]
    if split == "eval":
        tokens = max(tokens, REAL["activations"]["splice_windows"] * (REAL["model"]["context"] - 1))
    return -(-tokens // (REAL["model"]["context"] - 1))


# ------------------------------------------------------------ sanity check (sanity.smk)
SANITY = config.get("sanity") or {"sae": None}
SANITY_DIR = f"results/sanity/{SANITY.get('name') or 'sae'}"
SANITY_USER_RUN = saesanity_runs.sanity_user_run(config)


def sanity_relu_runs(wildcards):
    """TrainConfig values of each ReLU baseline to calibrate (its first seed)."""
    if not SANITY_USER_RUN or SANITY_USER_RUN["architecture"] != "relu":
        raise ValueError("sanity_relu_l1: the check's baselines are not ReLU (or no L0 yet)")
    l0, seed = SANITY_USER_RUN["target_l0"], min(SANITY["seeds"])
    return {
        f"{variant}/{init}": saesanity_runs.real_train_config(
            config, "relu", variant, init, l0, seed
        )
        for variant, inits in SANITY["variants"].items()
        for init in inits
    }


def sanity_sae_files(wildcards):
    """The SAE's two files, where the config names its directory."""
    if not SANITY.get("sae"):
        raise ValueError("sanity.sae is not set: run `saesanity check PATH` (or --config)")
    return {
        "cfg": os.path.join(SANITY["sae"], "cfg.json"),
        "weights": os.path.join(SANITY["sae"], "sae_weights.safetensors"),
    }



# ------------------------------------------------------------ report (provenance.smk)
def benchmark_patterns():
    """Rule name -> its benchmark file pattern, for every rule that has one."""
    return {r.name: str(r.benchmark) for r in workflow.rules if r.benchmark}


def study_targets(wildcards):
    """Everything the other `<study>_all` rules build: runtimes are read after them."""
    targets = []
    for candidate in workflow.rules:
        if not candidate.name.endswith("_all") or candidate.name == "provenance_all":
            continue
        for item in candidate.input:
            item = item(wildcards) if callable(item) else item  # an input function
            targets.extend([item] if isinstance(item, str) else list(item))
    return targets
