"""Snakemake script: EV / CE loss / KL vs L0 (with a note on how long the runs trained
and what the training-length study found or measures), and the decoder-drift histograms."""

import pandas as pd

from saesanity.evals.metrics import RECONSTRUCTION_METRICS
from saesanity.plots.real import figure_drift, figure_reconstruction
from saesanity.plots.real_length import training_length_note
from saesanity.studies.real import load_drift
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
params = snakemake.params
metrics = pd.read_csv(snakemake.input.metrics)
gaps = pd.read_csv(snakemake.input.gaps) if "gaps" in snakemake.input.keys() else None
if gaps is not None:  # the note speaks of the figure's metrics only
    gaps = gaps[gaps["metric"].isin(RECONSTRUCTION_METRICS)]
note = training_length_note(
    metrics,
    gaps,
    params.length_study_batch_size,
    study_steps=params.length_study_steps,
    study_l0=params.length_study_l0,
)
figure_reconstruction(metrics, snakemake.output.reconstruction, note=note)
figure_drift(load_drift(list(snakemake.input.drift)), snakemake.output.drift)
