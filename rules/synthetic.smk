# Case study 1: synthetic data with known ground truth.
# data -> checkpoints -> per-run metrics -> metric tables -> figures

from saesanity.studies import length as saesanity_length


rule synthetic_all:
    input:
        "results/synthetic/metrics.csv",
        "results/synthetic/summary.csv",
        "figures/synthetic_summary.pdf",
        "figures/synthetic_architectures.pdf",
        "figures/synthetic_curves.pdf",
        expand("figures/synthetic_{regime}.pdf", regime=synthetic_regimes()),


rule synthetic_ground_truth:
    output:
        truth="results/synthetic/{regime}/ground_truth.safetensors",
        meta="results/synthetic/{regime}/ground_truth.safetensors.json",
    params:
        n=SYNTHETIC["n"],
        num_features=SYNTHETIC["num_features"],
        magnitude=SYNTHETIC["magnitude"],
        data_seed=SYNTHETIC["data_seed"],
        regime_spec=lambda wc: SYNTHETIC["regimes"][wc.regime],
    log:
        "logs/synthetic/ground_truth/{regime}.log",
    benchmark:
        "benchmarks/synthetic/ground_truth/{regime}.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/synthetic_ground_truth.py"


rule synthetic_train:
    input:
        truth=rules.synthetic_ground_truth.output.truth,
        meta=rules.synthetic_ground_truth.output.meta,
    output:
        weights=f"{RUN_DIR}/sae.safetensors",
        config=f"{RUN_DIR}/sae.json",
        curve=f"{RUN_DIR}/curve.csv",
    params:
        train=lambda wc: saesanity_runs.synthetic_train_config(config, **wc),
        device=config["device"],
    log:
        f"logs/synthetic/train/{RUN_PATH}.log",
    benchmark:
        f"benchmarks/synthetic/train/{RUN_PATH}.tsv"
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/synthetic_train.py"


rule synthetic_evaluate:
    input:
        weights=rules.synthetic_train.output.weights,
        config=rules.synthetic_train.output.config,
        truth=rules.synthetic_ground_truth.output.truth,
        meta=rules.synthetic_ground_truth.output.meta,
    output:
        metrics=f"{RUN_DIR}/eval.json",
        recovery=f"{RUN_DIR}/recovery.csv",
    params:
        regime_spec=lambda wc: SYNTHETIC["regimes"][wc.regime],
        eval_samples=SYNTHETIC["eval_samples"],
        eval_batch_size=SYNTHETIC["eval_batch_size"],
        eval_seed=SYNTHETIC["eval_seed"],
        recovery_threshold=SYNTHETIC["recovery_threshold"],
    log:
        f"logs/synthetic/evaluate/{RUN_PATH}.log",
    benchmark:
        f"benchmarks/synthetic/evaluate/{RUN_PATH}.tsv"
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/synthetic_evaluate.py"


rule synthetic_regime_metrics:
    input:
        lambda wc: synthetic_run_files("eval.json", regime=wc.regime),
    output:
        "results/synthetic/{regime}/metrics.csv",
    log:
        "logs/synthetic/metrics/{regime}.log",
    benchmark:
        "benchmarks/synthetic/metrics/{regime}.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/synthetic_metrics.py"


rule synthetic_metrics:
    input:
        expand("results/synthetic/{regime}/metrics.csv", regime=synthetic_regimes()),
    output:
        report(
            "results/synthetic/metrics.csv",
            caption="../report/synthetic_metrics.rst",
            category="Case study 1: synthetic",
        ),
    log:
        "logs/synthetic/metrics/all.log",
    benchmark:
        "benchmarks/synthetic/metrics/all.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/concat_tables.py"


rule synthetic_summary:
    input:
        "results/synthetic/metrics.csv",
    output:
        table=report(
            "results/synthetic/summary.csv",
            caption="../report/synthetic_summary.rst",
            category="Case study 1: synthetic",
        ),
        figure=report(
            "figures/synthetic_summary.pdf",
            caption="../report/synthetic_summary.rst",
            category="Case study 1: synthetic",
        ),
    log:
        "logs/synthetic/summary.log",
    benchmark:
        "benchmarks/synthetic/summary.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/synthetic_summary.py"


rule synthetic_regime_figure:
    # constant: EV vs recovery per architecture; variable: recovery vs feature probability.
    input:
        metrics="results/synthetic/{regime}/metrics.csv",
        recovery=lambda wc: synthetic_run_files("recovery.csv", regime=wc.regime, study_only=True),
        # Snapshots at every doubling (length study): has what they learned settled?
        lengths=lambda wc: saesanity_length.main_point_tables(config, wc.regime),
    output:
        report(
            "figures/synthetic_{regime}.pdf",
            caption="../report/synthetic_regime.rst",
            category="Case study 1: synthetic",
        ),
    params:
        settle_rule=SETTLE_RULE,
        law=lambda wc: SYNTHETIC["regimes"][wc.regime]["law"],
        recovery_threshold=SYNTHETIC["recovery_threshold"],
        shape={"n": SYNTHETIC["n"], "num_features": SYNTHETIC["num_features"],
               "d_sae": SYNTHETIC["d_sae"]},
    log:
        "logs/figures/synthetic_{regime}.log",
    benchmark:
        "benchmarks/figures/synthetic_{regime}.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/synthetic_regime_figure.py"


rule synthetic_architectures_figure:
    input:
        metrics="results/synthetic/metrics.csv",
        lengths=saesanity_length.main_point_tables(config),
    output:
        report(
            "figures/synthetic_architectures.pdf",
            caption="../report/synthetic_architectures.rst",
            category="Case study 1: synthetic",
        ),
    params:
        settle_rule=SETTLE_RULE,
        recovery_threshold=SYNTHETIC["recovery_threshold"],
    log:
        "logs/figures/synthetic_architectures.log",
    benchmark:
        "benchmarks/figures/synthetic_architectures.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/synthetic_architectures_figure.py"


rule synthetic_curves_figure:
    input:
        synthetic_run_files("curve.csv"),
    output:
        report(
            "figures/synthetic_curves.pdf",
            caption="../report/synthetic_curves.rst",
            category="Case study 1: synthetic",
        ),
    log:
        "logs/figures/synthetic_curves.log",
    benchmark:
        "benchmarks/figures/synthetic_curves.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/synthetic_curves_figure.py"
