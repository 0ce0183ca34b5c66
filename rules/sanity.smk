# Sanity check of a researcher's own SAE (`saesanity check PATH`, docs/sanity_check.md).
# SAELens directory -> checkpoint of this workflow -> its held-out L0 -> (saesanity check
# sets the real grid to its hook, width and L0) -> random baselines and every evaluation
# -> verdict per metric (CSV, HTML, PDF).

rule sanity:
    input:
        (
            [f"{SANITY_DIR}/verdicts.csv", f"{SANITY_DIR}/report.html", f"{SANITY_DIR}/report.pdf"]
            if SANITY_USER_RUN
            else [f"{SANITY_DIR}/l0.json"]
        ),


rule sanity_import:
    input:
        unpack(sanity_sae_files),
    output:
        weights=f"{SANITY_DIR}/user/sae.safetensors",
        config=f"{SANITY_DIR}/user/sae.json",
    log:
        f"logs/sanity/{SANITY.get('name') or 'sae'}/import.log",
    benchmark:
        f"benchmarks/sanity/{SANITY.get('name') or 'sae'}/import.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/sanity_import.py"


rule sanity_l0:
    input:
        weights=rules.sanity_import.output.weights,
        config=rules.sanity_import.output.config,
        eval_manifest=store_manifest("eval"),
    output:
        f"{SANITY_DIR}/l0.json",
    params:
        eval_tokens=REAL["activations"]["eval_tokens"],
        batch_size=REAL["model"]["batch_size"],
        outlier_factor=REAL["activations"]["outlier_norm_factor"],
        store_expect=REAL_STORE_EXPECT,
    log:
        f"logs/sanity/{SANITY.get('name') or 'sae'}/l0.log",
    benchmark:
        f"benchmarks/sanity/{SANITY.get('name') or 'sae'}/l0.tsv"
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/sanity_l0.py"


rule sanity_user_checkpoint:
    # The SAE as the "user" run of the real grid: every evaluation reads it like a baseline.
    wildcard_constraints:
        variant=USER_VARIANT,
        init=USER_INIT,
    input:
        weights=rules.sanity_import.output.weights,
        config=rules.sanity_import.output.config,
    output:
        weights=f"{REAL_RUN_DIR}/sae.safetensors",
        config=f"{REAL_RUN_DIR}/sae.json",
    log:
        f"logs/sanity/{REAL_RUN_PATH}.log",
    benchmark:
        f"benchmarks/sanity/{REAL_RUN_PATH}.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    shell:
        "(cp {input.weights} {output.weights} && cp {input.config} {output.config}) > {log} 2>&1"


rule sanity_report:
    input:
        metrics=(
            f"results/real/l0_{SANITY_USER_RUN['target_l0']}/metrics.csv"
            if SANITY_USER_RUN
            else []
        ),
        l0=rules.sanity_l0.output[0],
        user=rules.sanity_import.output.config,
    output:
        csv=f"{SANITY_DIR}/verdicts.csv",
        html=f"{SANITY_DIR}/report.html",
        pdf=f"{SANITY_DIR}/report.pdf",
    params:
        sanity=SANITY,
        training={key: REAL["training"].get(key) for key in ("max_samples", "batch_size", "lr")},
    log:
        f"logs/sanity/{SANITY.get('name') or 'sae'}/report.log",
    benchmark:
        f"benchmarks/sanity/{SANITY.get('name') or 'sae'}/report.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/sanity_report.py"


rule sanity_relu_l1:
    # ReLU baselines have no target-L0 mechanism: each (variant, init) gets the L1
    # coefficient that gives the SAE's L0 on held-out tokens (saesanity.studies.relu_calibration).
    input:
        train_manifest=store_manifest("train"),
        eval_manifest=store_manifest("eval"),
        l0=rules.sanity_l0.output[0],
    output:
        f"{SANITY_DIR}/relu_l1.json",
    params:
        runs=sanity_relu_runs,
        target_l0=(SANITY_USER_RUN or {}).get("target_l0"),
        tolerance=SANITY.get("l0_tolerance"),
        eval_tokens=REAL["activations"]["eval_tokens"],
        batch_size=REAL["model"]["batch_size"],
        shuffle_shards=REAL["activations"]["shuffle_shards"],
        outlier_factor=REAL["activations"]["outlier_norm_factor"],
        device=config["device"],
    log:
        f"logs/sanity/{SANITY.get('name') or 'sae'}/relu_l1.log",
    benchmark:
        f"benchmarks/sanity/{SANITY.get('name') or 'sae'}/relu_l1.tsv"
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/sanity_relu_l1.py"
