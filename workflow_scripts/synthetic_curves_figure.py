"""Snakemake script: training curves of every run (convergence check)."""

from saesanity.plots.synthetic import figure_curves
from saesanity.studies.runs import setup_logging
from saesanity.studies.synthetic import load_curves

setup_logging(snakemake.log[0])
figure_curves(load_curves(list(snakemake.input)), snakemake.output[0])
