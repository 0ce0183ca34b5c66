"""Snakemake script: the verdict per metric (CSV) and the one-page report (HTML, PDF)."""

import json

import pandas as pd

from saesanity.studies.runs import USER_VARIANT, setup_logging
from saesanity.studies.sanity import sanity_notes
from saesanity.studies.sanity_report import sanity_verdicts, write_sanity_report

setup_logging(snakemake.log[0])
sanity = dict(snakemake.params.sanity)
metrics = pd.read_csv(snakemake.input.metrics)
# The SAE and its baselines: the architecture the baselines were trained with.
measured = json.loads(open(snakemake.input.l0).read())
runs = metrics[
    (metrics["target_l0"] == int(sanity["l0"]))
    & (
        (metrics["variant"] == USER_VARIANT)
        | (metrics["architecture"] == measured["baseline_architecture"])
    )
]
columns = [column for column in sanity["metrics"] if column in runs.columns]
table = sanity_verdicts(runs, columns, confidence=float(sanity["confidence"]))
notes, unmatched = sanity_notes(runs, measured, sanity, dict(snakemake.params.training))
if unmatched:
    notes.append(
        "Verdicts against baselines whose L0 is not matched compare different sparsities: "
        + ", ".join(unmatched)
    )
write_sanity_report(
    table,
    runs,
    snakemake.output.csv,
    snakemake.output.html,
    snakemake.output.pdf,
    title=f"Sanity check: {sanity['name']} against its random baselines",
    notes=notes,
)
