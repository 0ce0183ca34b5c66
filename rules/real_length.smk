# Training length on real activations: is the trained SAE's lead over the random
# baselines still growing when training stops? (docs/real.md, "Training length")
# one run per (architecture, variant, init) with snapshots at every doubling of steps
# -> one evaluation per snapshot -> points table and gap table -> figure

saesanity_real_length.check_length_config(config)

REAL_LENGTH_RUN_DIR = saesanity_real_length.RUN_DIR
REAL_LENGTH_RUN_PATH = REAL_LENGTH_RUN_DIR.replace("results/real_length/", "")
REAL_LENGTH_RUNS = saesanity_real_length.length_runs(config)
REAL_LENGTH_POINTS = (
    saesanity_real_length.sample_points(config) if REAL_LENGTH.get("enabled") else []
)
REAL_LENGTH_POINT_FILES = [
    f"{saesanity_real_length.run_dir(run)}/points/samples{samples}.json"
    for run in REAL_LENGTH_RUNS
    for samples in REAL_LENGTH_POINTS
]


wildcard_constraints:
    samples=r"\d+",


rule real_length_all:
    input:
        (
            ["figures/real_length.pdf", "results/real_length/gaps.csv"]
            if REAL_LENGTH.get("enabled")
            else []
        ),


rule real_length_train:
    # One run to the study's last point; a snapshot at every point (resumable).
    wildcard_constraints:
        variant="|".join(VARIANTS),
        init="|".join(RANDOM_INITS),
    input:
        manifest=store_manifest("train"),
    output:
        weights=f"{REAL_LENGTH_RUN_DIR}/sae.safetensors",
        config=f"{REAL_LENGTH_RUN_DIR}/sae.json",
        curve=f"{REAL_LENGTH_RUN_DIR}/curve.csv",
        saelens_cfg=f"{REAL_LENGTH_RUN_DIR}/saelens/cfg.json",
        saelens_weights=f"{REAL_LENGTH_RUN_DIR}/saelens/sae_weights.safetensors",
        snapshots=expand(
            f"{REAL_LENGTH_RUN_DIR}/snapshots/samples{{samples}}.{{ext}}",
            samples=REAL_LENGTH_POINTS,
            ext=["safetensors", "json"],
            allow_missing=True,
        ),
    params:
        train=lambda wc: saesanity_real_length.length_train_config(config, **wc),
        device=config["device"],
        shuffle_shards=REAL["activations"]["shuffle_shards"],
        saelens=REAL_SAELENS_METADATA,
        store_expect=REAL_STORE_EXPECT,
        outlier_factor=REAL["activations"]["outlier_norm_factor"],
    log:
        f"logs/real_length/train/{REAL_LENGTH_RUN_PATH}.log",
    benchmark:
        f"benchmarks/real_length/train/{REAL_LENGTH_RUN_PATH}.tsv"
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/real_train.py"


rule real_length_evaluate:
    wildcard_constraints:
        variant="|".join(VARIANTS),
        init="|".join(RANDOM_INITS),
    input:
        unpack(real_model_inputs),
        weights=f"{REAL_LENGTH_RUN_DIR}/snapshots/samples{{samples}}.safetensors",
        config=f"{REAL_LENGTH_RUN_DIR}/snapshots/samples{{samples}}.json",
        train_manifest=store_manifest("train"),
        eval_manifest=store_manifest("eval"),
        reference=rules.real_splice_reference.output.reference,
        caches=PROBING_CACHES,
    output:
        f"{REAL_LENGTH_RUN_DIR}/points/samples{{samples}}.json",
    params:
        model=REAL_MODEL_SPEC,
        families=PROBING["families"],
        probing_ks=REAL_LENGTH.get("probing_ks", [1, 5]),
        eval_tokens=REAL["activations"]["eval_tokens"],
        train_eval_tokens=REAL_LENGTH.get("train_eval_tokens", 32768),
        model_batch_size=REAL["model"]["batch_size"],
        outlier_factor=REAL["activations"]["outlier_norm_factor"],
        store_expect=REAL_STORE_EXPECT,
    log:
        f"logs/real_length/evaluate/{REAL_LENGTH_RUN_PATH}/samples{{samples}}.log",
    benchmark:
        f"benchmarks/real_length/evaluate/{REAL_LENGTH_RUN_PATH}/samples{{samples}}.tsv"
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/real_length_evaluate.py"


rule real_length_table:
    input:
        REAL_LENGTH_POINT_FILES,
    output:
        points=report(
            "results/real_length/points.csv",
            caption="../report/real_length.rst",
            category="Training length",
        ),
        gaps=report(
            "results/real_length/gaps.csv",
            caption="../report/real_length.rst",
            category="Training length",
        ),
    params:
        tolerance=REAL_LENGTH.get("tolerance", 0.01),
    log:
        "logs/real_length/table.log",
    benchmark:
        "benchmarks/real_length/table.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/real_length_table.py"


rule real_length_figure:
    input:
        points="results/real_length/points.csv",
        gaps="results/real_length/gaps.csv",
    output:
        report(
            "figures/real_length.pdf",
            caption="../report/real_length.rst",
            category="Training length",
        ),
    log:
        "logs/figures/real_length.log",
    benchmark:
        "benchmarks/figures/real_length.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/real_length_figure.py"
