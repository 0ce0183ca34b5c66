# Theory check: the study's bound m exp(-n tau^2 / 2) on the share of directions that m
# random caps of cosine tau can express, against the exact value and a Monte Carlo
# estimate (docs/theory.md). No inputs: the points come from the config.

from saesanity.studies.theory import theory_points, theory_settings

# Optional section: without it `all` leaves the check out.
THEORY = config.get("theory")


rule theory_all:
    input:
        ["results/theory/cap_bound.csv", "figures/theory_cap_bound.pdf"] if THEORY else [],


rule theory_cap_bound:
    output:
        csv=report(
            "results/theory/cap_bound.csv",
            caption="../report/theory_cap_bound.rst",
            category="Theory check",
        ),
        pdf=report(
            "figures/theory_cap_bound.pdf",
            caption="../report/theory_cap_bound.rst",
            category="Theory check",
        ),
    params:
        settings=lambda wc: theory_settings(config),
        points=lambda wc: theory_points(config),
    log:
        "logs/theory/cap_bound.log",
    benchmark:
        "benchmarks/theory/cap_bound.tsv"
    threads: job_threads("light")
    resources:
        **job_resources("light"),
    conda:
        "../envs/saesanity.yaml"
    script:
        "../workflow_scripts/theory_cap_bound.py"
