# Training length: does feature recovery depend on how long the SAE trains?
# snapshots (main runs, or dedicated long runs) -> per-run point CSVs -> tables -> figures

from saesanity.studies import length as saesanity_length

saesanity_length.check_length_config(config)

LENGTH = config.get("length_study", {})
LONG_RUN_DIR = saesanity_length.LONG_RUN_DIR
LONG_RUN_PATH = LONG_RUN_DIR.replace("results/length/", "")  # for logs and benchmarks
SWEEP_RUN_DIR = saesanity_length.SWEEP_RUN_DIR
SWEEP_RUN_PATH = SWEEP_RUN_DIR.replace("results/length/", "")


wildcard_constraints:
    lr=r"[0-9][0-9.e+-]*",
    batch_size=r"\d+",
    length_source="main|long",
    auxk_tag=saesanity_length.AUXK_TAG_PATTERN,


rule length_all:
    input:
        saesanity_length.length_targets(config),


rule length_evaluate_main:
    # Snapshots of a main synthetic run; its final point is the main evaluation itself.
    input:
        weights=f"{RUN_DIR}/sae.safetensors",
        config=f"{RUN_DIR}/sae.json",
        final_eval=f"{RUN_DIR}/eval.json",
        truth="results/synthetic/{regime}/ground_truth.safetensors",
    output:
        table=f"{RUN_DIR}/length.csv",
        points=directory(f"{RUN_DIR}/length_points"),
    params:
        regime_spec=lambda wc: SYNTHETIC["regimes"][wc.regime],
        eval_samples=SYNTHETIC["eval_samples"],
        eval_batch_size=SYNTHETIC["eval_batch_size"],
        eval_seed=SYNTHETIC["eval_seed"],
        recovery_threshold=SYNTHETIC["recovery_threshold"],
    log:
        f"logs/length/evaluate_main/{RUN_PATH}.log",
    benchmark:
        f"benchmarks/length/evaluate_main/{RUN_PATH}.tsv"
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/length_evaluate.py"


rule length_train:
    # A dedicated run to the length study's budget (resumable, like synthetic_train).
    input:
        truth="results/synthetic/{regime}/ground_truth.safetensors",
    output:
        weights=f"{LONG_RUN_DIR}/sae.safetensors",
        config=f"{LONG_RUN_DIR}/sae.json",
        curve=f"{LONG_RUN_DIR}/curve.csv",
    params:
        train=lambda wc: saesanity_length.long_train_config(config, **wc),
        device=config["device"],
    log:
        f"logs/length/train/{LONG_RUN_PATH}.log",
    benchmark:
        f"benchmarks/length/train/{LONG_RUN_PATH}.tsv"
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/length_train.py"


rule length_evaluate_long:
    input:
        weights=rules.length_train.output.weights,
        config=rules.length_train.output.config,
        truth="results/synthetic/{regime}/ground_truth.safetensors",
    output:
        table=f"{LONG_RUN_DIR}/length.csv",
        points=directory(f"{LONG_RUN_DIR}/length_points"),
    params:
        regime_spec=lambda wc: SYNTHETIC["regimes"][wc.regime],
        eval_samples=SYNTHETIC["eval_samples"],
        eval_batch_size=SYNTHETIC["eval_batch_size"],
        eval_seed=SYNTHETIC["eval_seed"],
        recovery_threshold=SYNTHETIC["recovery_threshold"],
    log:
        f"logs/length/evaluate_long/{LONG_RUN_PATH}.log",
    benchmark:
        f"benchmarks/length/evaluate_long/{LONG_RUN_PATH}.tsv"
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/length_evaluate.py"


rule length_table:
    input:
        lambda wc: saesanity_length.source_point_tables(config, wc.length_source),
    output:
        table=report(
            "results/length/{length_source}.csv",
            caption="../report/length_table.rst",
            category="Training length",
        ),
        settled=report(
            "results/length/{length_source}_settled.csv",
            caption="../report/length_settled.rst",
            category="Training length",
        ),
    params:
        tolerance=SETTLE_RULE["tolerance"],
        relative_tolerance=SETTLE_RULE["relative_tolerance"],
    log:
        "logs/length/table_{length_source}.log",
    benchmark:
        "benchmarks/length/table_{length_source}.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/length_table.py"


rule length_figure:
    input:
        "results/length/{length_source}.csv",
    output:
        report(
            "figures/length_{length_source}.pdf",
            caption="../report/length_figure.rst",
            category="Training length",
        ),
    params:
        recovery_threshold=SYNTHETIC["recovery_threshold"],
    log:
        "logs/figures/length_{length_source}.log",
    benchmark:
        "benchmarks/figures/length_{length_source}.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/length_figure.py"


rule length_long_best:
    # Per regime and architecture, the long runs' setting that recovers the most
    # features at their common length, whether rates on both sides recovered fewer, and
    # whether it has settled.
    input:
        table="results/length/long.csv",
        settled="results/length/long_settled.csv",
    output:
        report(
            "results/length/long_best.csv",
            caption="../report/length_long_best.rst",
            category="Training length",
        ),
    log:
        "logs/length/long_best.log",
    benchmark:
        "benchmarks/length/long_best.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/length_long_best.py"


rule length_sensitivity:
    input:
        saesanity_length.long_point_tables(config, include_long=False),
    output:
        table=report(
            "results/length/sensitivity.csv",
            caption="../report/length_sensitivity.rst",
            category="Training length",
        ),
        figure=report(
            "figures/length_sensitivity.pdf",
            caption="../report/length_sensitivity.rst",
            category="Training length",
        ),
    params:
        budget=(
            saesanity_length.sensitivity_budget(config)
            if LENGTH.get("sensitivity", {}).get("enabled", False)
            else None
        ),
        recovery_threshold=SYNTHETIC["recovery_threshold"],
    log:
        "logs/length/sensitivity.log",
    benchmark:
        "benchmarks/length/sensitivity.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/length_sensitivity.py"


# ---------------------------------------------- the coarse lr x batch size sweep
# Full grid of absolute learning rates x batch sizes at a short budget, every doubling
# evaluated (config/synthetic_sweep.yaml); per regime: figures/length_sweep_<regime>.pdf.


rule length_sweep_train:
    input:
        truth="results/synthetic/{regime}/ground_truth.safetensors",
    output:
        weights=f"{SWEEP_RUN_DIR}/sae.safetensors",
        config=f"{SWEEP_RUN_DIR}/sae.json",
        curve=f"{SWEEP_RUN_DIR}/curve.csv",
    params:
        train=lambda wc: saesanity_length.sweep_train_config(config, **wc),
        device=config["device"],
    log:
        f"logs/length/sweep_train/{SWEEP_RUN_PATH}.log",
    benchmark:
        f"benchmarks/length/sweep_train/{SWEEP_RUN_PATH}.tsv"
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/length_train.py"


rule length_sweep_evaluate:
    input:
        weights=rules.length_sweep_train.output.weights,
        config=rules.length_sweep_train.output.config,
        truth="results/synthetic/{regime}/ground_truth.safetensors",
    output:
        table=f"{SWEEP_RUN_DIR}/length.csv",
        points=directory(f"{SWEEP_RUN_DIR}/length_points"),
    params:
        regime_spec=lambda wc: SYNTHETIC["regimes"][wc.regime],
        eval_samples=SYNTHETIC["eval_samples"],
        eval_batch_size=SYNTHETIC["eval_batch_size"],
        eval_seed=SYNTHETIC["eval_seed"],
        recovery_threshold=SYNTHETIC["recovery_threshold"],
        # Not reported by the sweep, and ~3/4 of an evaluation's time: every point skips it.
        latent_classification=False,
    log:
        f"logs/length/sweep_evaluate/{SWEEP_RUN_PATH}.log",
    benchmark:
        f"benchmarks/length/sweep_evaluate/{SWEEP_RUN_PATH}.tsv"
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/length_evaluate.py"


rule length_sweep_table:
    input:
        lambda wc: saesanity_length.sweep_point_tables(config, wc.regime),
    output:
        table=report(
            "results/length/sweep_{regime}.csv",
            caption="../report/length_sweep.rst",
            category="Training length",
        ),
        summary=report(
            "results/length/sweep_{regime}_summary.csv",
            caption="../report/length_sweep.rst",
            category="Training length",
        ),
        best=report(
            "results/length/sweep_{regime}_best.csv",
            caption="../report/length_sweep.rst",
            category="Training length",
        ),
    log:
        "logs/length/sweep_table_{regime}.log",
    benchmark:
        "benchmarks/length/sweep_table_{regime}.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/length_sweep_table.py"


rule length_sweep_figure:
    input:
        "results/length/sweep_{regime}.csv",
    output:
        report(
            "figures/length_sweep_{regime}.pdf",
            caption="../report/length_sweep.rst",
            category="Training length",
        ),
    params:
        recovery_threshold=SYNTHETIC["recovery_threshold"],
    log:
        "logs/figures/length_sweep_{regime}.log",
    benchmark:
        "benchmarks/figures/length_sweep_{regime}.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/length_sweep_figure.py"
