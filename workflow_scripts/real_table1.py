"""Snakemake script: table 1 (CSV + PDF) at the middle L0, with a note on how long its
runs trained and what the training-length study found (when on) or measures."""

import pandas as pd

from saesanity.plots.real import figure_table1
from saesanity.plots.real_length import training_length_note
from saesanity.provenance import write_result_csv
from saesanity.studies.real import table1
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
params = snakemake.params
metrics = pd.read_csv(snakemake.input.metrics)
# Table 1's metric columns, in the configured order (a family may lack some, e.g. CE for ReLU).
columns = [column for column in params.columns if column in metrics.columns]
l0 = int(params.l0)
table = table1(metrics, l0, columns)
write_result_csv(table, snakemake.output.csv, snakemake.config)
gaps = pd.read_csv(snakemake.input.gaps) if "gaps" in snakemake.input.keys() else None
if gaps is not None:  # the note speaks of the table's columns only
    gaps = gaps[gaps["metric"].isin(columns)]
note = training_length_note(
    metrics[metrics["target_l0"] == l0],
    gaps,
    params.length_study_batch_size,
    study_steps=params.length_study_steps,
    study_l0=params.length_study_l0,
)
figure_table1(table, snakemake.output.pdf, title=params.title, note=note)
