# Case study 2: real residual-stream activations.
# model + corpus -> token windows -> activation stores -> checkpoints
# -> per-checkpoint metrics -> metric tables -> figures and table 1


# Table 1 and the reconstruction figure say how long their runs trained and what the
# training-length study found (its gap table, when it is on) or measures.
REAL_LENGTH_GAPS = {"gaps": "results/real_length/gaps.csv"} if REAL_LENGTH.get("enabled") else {}
REAL_LENGTH_NOTE_PARAMS = dict(
    length_study_batch_size=REAL_LENGTH.get("batch_size"),
    length_study_steps=saesanity_real_length.study_steps(config),
    length_study_l0=saesanity_real_length.study_l0(config),
)


rule real_all:
    input:
        "results/real/metrics.csv",
        "results/real/table1.csv",
        "figures/table1.pdf",
        "figures/summary_bars.pdf",
        "figures/real_reconstruction.pdf",
        "figures/real_drift.pdf",


rule real_fetch_model:
    output:
        model_dir=directory(REAL_MODEL_DIR),
    params:
        embedded=lambda wc: embedded_model(REAL["model"]["embedded"]),
    log:
        "logs/real/fetch_model.log",
    benchmark:
        "benchmarks/real/fetch_model.tsv"
    threads: job_threads("prepare")
    resources:
        **job_resources("prepare"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/real_fetch_model.py"


rule real_fetch_corpus:
    output:
        archives="resources/corpus/archives/fetch_manifest.json",
    params:
        sources=REAL["corpus"]["offline_sources"],
    log:
        "logs/real/fetch_corpus.log",
    benchmark:
        "benchmarks/real/fetch_corpus.tsv"
    threads: job_threads("prepare")
    resources:
        **job_resources("prepare"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/corpus_fetch.py"


rule real_corpus:
    input:
        unpack(real_corpus_inputs),
    output:
        corpus="resources/corpus/corpus.jsonl.gz",
        manifest="resources/corpus/corpus.manifest.json",
    params:
        corpus=REAL["corpus"],
    log:
        "logs/real/corpus.log",
    benchmark:
        "benchmarks/real/corpus.tsv"
    threads: job_threads("prepare")
    resources:
        **job_resources("prepare"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/real_corpus.py"


rule real_tokenise:
    input:
        unpack(real_model_inputs),
        corpus=rules.real_corpus.output.corpus,
    output:
        windows="results/real/tokens/{split}.npy",
    params:
        model=REAL_MODEL_SPEC,
        windows=lambda wc: real_windows(wc.split),
    log:
        "logs/real/tokenise/{split}.log",
    benchmark:
        "benchmarks/real/tokenise/{split}.tsv"
    threads: job_threads("prepare")
    resources:
        **job_resources("prepare"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/real_tokenise.py"


rule real_extract:
    input:
        unpack(real_model_inputs),
        windows=rules.real_tokenise.output.windows,
    output:
        manifest="results/real/activations/{split}/manifest.json",
    params:
        model=REAL_EXTRACTION_SPEC,
        activations={key: REAL["activations"][key] for key in ("windows_per_shard", "dtype")},
    log:
        "logs/real/extract/{split}.log",
    benchmark:
        "benchmarks/real/extract/{split}.tsv"
    threads: job_threads("extract")
    resources:
        **job_resources("extract"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/real_extract.py"


rule real_splice_reference:
    input:
        unpack(real_model_inputs),
        windows="results/real/tokens/eval.npy",
    output:
        reference="results/real/splice_reference.safetensors",
        summary="results/real/splice_reference.json",
    params:
        model=REAL_MODEL_SPEC,
        windows=REAL["activations"]["splice_windows"],
    log:
        "logs/real/splice_reference.log",
    benchmark:
        "benchmarks/real/splice_reference.tsv"
    threads: job_threads("extract")
    resources:
        **job_resources("extract"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/real_splice_reference.py"


rule real_train:
    wildcard_constraints:
        variant="|".join(VARIANTS),
        init="|".join(RANDOM_INITS),
    input:
        manifest=store_manifest("train"),
    output:
        weights=f"{REAL_RUN_DIR}/sae.safetensors",
        config=f"{REAL_RUN_DIR}/sae.json",
        curve=f"{REAL_RUN_DIR}/curve.csv",
        saelens_cfg=f"{REAL_RUN_DIR}/saelens/cfg.json",
        saelens_weights=f"{REAL_RUN_DIR}/saelens/sae_weights.safetensors",
    params:
        train=lambda wc: saesanity_runs.real_train_config(config, **wc),
        device=config["device"],
        shuffle_shards=REAL["activations"]["shuffle_shards"],
        saelens=REAL_SAELENS_METADATA,
        store_expect=REAL_STORE_EXPECT,
        outlier_factor=REAL["activations"]["outlier_norm_factor"],
    log:
        f"logs/real/train/{REAL_RUN_PATH}.log",
    benchmark:
        f"benchmarks/real/train/{REAL_RUN_PATH}.tsv"
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/real_train.py"


rule real_evaluate:
    input:
        unpack(real_model_inputs),
        weights=rules.real_train.output.weights,
        config=rules.real_train.output.config,
        eval_manifest=store_manifest("eval"),
        reference=rules.real_splice_reference.output.reference,
    output:
        metrics=f"{REAL_RUN_DIR}/eval.json",
        drift=f"{REAL_RUN_DIR}/drift.csv",
    params:
        model=REAL_MODEL_SPEC,
        eval_tokens=REAL["activations"]["eval_tokens"],
        outlier_factor=REAL["activations"]["outlier_norm_factor"],
        store_expect=REAL_STORE_EXPECT,
        batch_size=REAL["model"]["batch_size"],
    log:
        f"logs/real/evaluate/{REAL_RUN_PATH}.log",
    benchmark:
        f"benchmarks/real/evaluate/{REAL_RUN_PATH}.tsv"
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/real_evaluate.py"


rule real_reconstruction_metrics:
    input:
        lambda wc: real_run_files("eval.json", target_l0=wc.target_l0),
    output:
        "results/real/l0_{target_l0}/reconstruction.csv",
    log:
        "logs/real/metrics/reconstruction_l0_{target_l0}.log",
    benchmark:
        "benchmarks/real/metrics/reconstruction_l0_{target_l0}.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/real_metrics.py"


rule real_l0_metrics:
    # One table per L0 joins the metric families (REAL_METRIC_FAMILIES, common.smk).
    input:
        real_metric_family_files,
    output:
        "results/real/l0_{target_l0}/metrics.csv",
    log:
        "logs/real/metrics/all_l0_{target_l0}.log",
    benchmark:
        "benchmarks/real/metrics/all_l0_{target_l0}.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/real_join.py"


rule real_metrics:
    input:
        expand("results/real/l0_{target_l0}/metrics.csv", target_l0=real_run_l0s()),
    output:
        report(
            "results/real/metrics.csv",
            caption="../report/real_metrics.rst",
            category="Case study 2: real activations",
        ),
    log:
        "logs/real/metrics/all.log",
    benchmark:
        "benchmarks/real/metrics/all.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/concat_tables.py"


rule real_table1:
    # Only the runs at the table's L0: `snakemake figures/table1.pdf` trains nothing else.
    input:
        metrics=f"results/real/l0_{saesanity_runs.real_table_l0(config)}/metrics.csv",
        # With the training-length study on, the table's note says what it found.
        **REAL_LENGTH_GAPS,
    output:
        csv=report(
            "results/real/table1.csv",
            caption="../report/table1.rst",
            category="Case study 2: real activations",
        ),
        pdf=report(
            "figures/table1.pdf",
            caption="../report/table1.rst",
            category="Case study 2: real activations",
        ),
    params:
        l0=saesanity_runs.real_table_l0(config),
        title=REAL_TABLE_TITLE,
        columns=lambda wc: REAL_TABLE1_METRICS,
        **REAL_LENGTH_NOTE_PARAMS,
    log:
        "logs/real/table1.log",
    benchmark:
        "benchmarks/real/table1.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/real_table1.py"


rule real_summary_bars:
    # The headline metrics of table 1 as bars (the families the config evaluates there).
    input:
        table="results/real/table1.csv",
    output:
        report(
            "figures/summary_bars.pdf",
            caption="../report/summary_bars.rst",
            category="Case study 2: real activations",
        ),
    params:
        title=REAL_TABLE_TITLE,
        columns=lambda wc: REAL_TABLE1_METRICS,
    log:
        "logs/real/summary_bars.log",
    benchmark:
        "benchmarks/real/summary_bars.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/real_summary_bars.py"


rule real_figures:
    input:
        metrics="results/real/metrics.csv",
        drift=real_run_files("drift.csv", trained_only=True),
        **REAL_LENGTH_GAPS,
    output:
        reconstruction=report(
            "figures/real_reconstruction.pdf",
            caption="../report/real_reconstruction.rst",
            category="Case study 2: real activations",
        ),
        drift=report(
            "figures/real_drift.pdf",
            caption="../report/real_drift.rst",
            category="Case study 2: real activations",
        ),
    params:
        **REAL_LENGTH_NOTE_PARAMS,
    log:
        "logs/real/figures.log",
    benchmark:
        "benchmarks/real/figures.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/real_figures.py"
