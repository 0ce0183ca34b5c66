"""Snakemake script: the real training-length study's points and gap tables."""

from saesanity.core.checkpoint import atomic_write
from saesanity.studies.real_length import collect_points, gap_table
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
points = collect_points(list(snakemake.input))
gaps = gap_table(points, float(snakemake.params.tolerance))
atomic_write(snakemake.output.points, lambda tmp: points.to_csv(tmp, index=False))
atomic_write(snakemake.output.gaps, lambda tmp: gaps.to_csv(tmp, index=False))
