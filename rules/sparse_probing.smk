# Sparse probing: SAEBench's protocol on offline analogs of its datasets.
# archives -> balanced datasets -> model activations cached once per family
# -> residual baselines; per checkpoint: SAE top-k probes -> per-L0 table -> figure

from saesanity.evals.probing_data import check_probing_config, family_settings

check_probing_config(config)


PROBING = config["sparse_probing"]
PROBING_CACHE = "results/real/sparse_probing/cache/{family}.safetensors"


wildcard_constraints:
    family="|".join(PROBING["families"]),


PROBING_L0S = [l0 for l0 in real_run_l0s() if PROBING["l0s"] is None or l0 in PROBING["l0s"]]
PROBING_CACHES = expand(PROBING_CACHE, family=PROBING["families"])


rule sparse_probing_all:
    input:
        (
            [
                "figures/sparse_probing.pdf",
                "results/real/sparse_probing/baselines.csv",
                expand("results/real/l0_{target_l0}/sparse_probing.csv", target_l0=PROBING_L0S),
            ]
            if PROBING["enabled"]
            else []
        ),


rule probing_dataset:
    output:
        data="resources/probing/{family}.parquet",
        manifest="resources/probing/{family}.manifest.json",
    params:
        settings=lambda wc: family_settings(config, wc.family),
        archive_dir="resources/probing/archives",
    log:
        "logs/sparse_probing/dataset/{family}.log",
    benchmark:
        "benchmarks/sparse_probing/dataset/{family}.tsv"
    threads: job_threads("prepare")
    resources:
        **job_resources("prepare"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/probing_dataset.py"


rule probing_cache:
    input:
        unpack(real_model_inputs),
        data=rules.probing_dataset.output.data,
    output:
        cache=PROBING_CACHE,
    params:
        model=REAL_MODEL_SPEC,
        context=PROBING["context"],
        batch_tokens=PROBING["batch_tokens"],
        outlier_factor=(
            REAL["activations"]["outlier_norm_factor"] if PROBING["drop_outlier_tokens"] else None
        ),
    log:
        "logs/sparse_probing/cache/{family}.log",
    benchmark:
        "benchmarks/sparse_probing/cache/{family}.tsv"
    threads: job_threads("extract")
    resources:
        **job_resources("extract"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/probing_cache.py"


rule probing_baselines:
    input:
        caches=PROBING_CACHES,
    output:
        report(
            "results/real/sparse_probing/baselines.csv",
            caption="../report/sparse_probing_baselines.rst",
            category="Case study 2: real activations",
        ),
    params:
        families=PROBING["families"],
        ks=PROBING["ks"],
        cs=PROBING["full_probe_cs"],
        validation_fraction=PROBING["validation_fraction"],
    log:
        "logs/sparse_probing/baselines.log",
    benchmark:
        "benchmarks/sparse_probing/baselines.tsv"
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/probing_baselines.py"


rule probing_evaluate:
    input:
        weights=rules.real_train.output.weights,
        config=rules.real_train.output.config,
        caches=PROBING_CACHES,
    output:
        f"{REAL_RUN_DIR}/sparse_probing.json",
    params:
        families=PROBING["families"],
        ks=PROBING["ks"],
        full_probe=(
            {"cs": PROBING["full_probe_cs"], "validation_fraction": PROBING["validation_fraction"]}
            if PROBING["sae_full_probe"]
            else None
        ),
    log:
        f"logs/sparse_probing/evaluate/{REAL_RUN_PATH}.log",
    benchmark:
        f"benchmarks/sparse_probing/evaluate/{REAL_RUN_PATH}.tsv"
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/probing_evaluate.py"


rule probing_l0_table:
    input:
        lambda wc: real_run_files("sparse_probing.json", target_l0=wc.target_l0),
    output:
        "results/real/l0_{target_l0}/sparse_probing.csv",
    log:
        "logs/sparse_probing/table_l0_{target_l0}.log",
    benchmark:
        "benchmarks/sparse_probing/table_l0_{target_l0}.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/probing_table.py"


rule probing_figure:
    input:
        metrics="results/real/metrics.csv",
        baselines="results/real/sparse_probing/baselines.csv",
    output:
        report(
            "figures/sparse_probing.pdf",
            caption="../report/sparse_probing.rst",
            category="Case study 2: real activations",
        ),
    params:
        ks=[k for k in (1, 5) if k in PROBING["ks"]],
    log:
        "logs/sparse_probing/figure.log",
    benchmark:
        "benchmarks/sparse_probing/figure.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/probing_figure.py"
