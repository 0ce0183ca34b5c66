"""Snakemake script: training curves of every run (convergence check)."""

from saesanity.plots import figure_curves
from saesanity.synthetic_study import load_curves
from saesanity.workflow import setup_logging

setup_logging(snakemake.log[0])
figure_curves(load_curves(list(snakemake.input)), snakemake.output[0])
