# Issue 7: scale-out. The resolved config and per-rule runtimes, for the Snakemake report
# (`snakemake --report report.html` after `all`). Captions: report/*.rst.


rule scale_out_all:
    input:
        "results/config.yaml",
        "results/runtimes.csv",
        "figures/runtimes.pdf",


rule scale_out_config:
    # The merged config of this invocation (config.yaml + every --configfile).
    output:
        report("results/config.yaml", caption="../report/config.rst", category="Configuration"),
    params:
        config=config,
    log:
        "logs/scale_out/config.log",
    benchmark:
        "benchmarks/scale_out/config.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/scale_out_config.py"


rule scale_out_runtimes:
    input:
        study_targets,
    output:
        table=report(
            "results/runtimes.csv", caption="../report/runtimes.rst", category="Runtimes"
        ),
        figure=report(
            "figures/runtimes.pdf", caption="../report/runtimes_figure.rst", category="Runtimes"
        ),
    params:
        patterns=lambda wc: benchmark_patterns(),
    log:
        "logs/scale_out/runtimes.log",
    benchmark:
        "benchmarks/scale_out/runtimes.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/scale_out_runtimes.py"
