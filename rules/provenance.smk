# Provenance: the resolved config and per-rule runtimes, for the Snakemake report
# (`snakemake --report report.html` after `all`). Captions: report/*.rst.


rule provenance_all:
    input:
        "results/config.yaml",
        "results/runtimes.csv",
        "figures/runtimes.pdf",


rule provenance_config:
    # The merged config of this invocation (config.yaml + every --configfile).
    output:
        report("results/config.yaml", caption="../report/config.rst", category="Configuration"),
    params:
        config=config,
    log:
        "logs/provenance/config.log",
    benchmark:
        "benchmarks/provenance/config.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/provenance_config.py"


rule provenance_runtimes:
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
        "logs/provenance/runtimes.log",
    benchmark:
        "benchmarks/provenance/runtimes.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/provenance_runtimes.py"
