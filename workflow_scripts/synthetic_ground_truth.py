"""Snakemake script: draw and save one regime's ground-truth dictionary and probabilities."""

from saesanity.sources.synthetic import (
    expected_active_features,
    make_ground_truth,
    save_ground_truth,
)
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
params = snakemake.params
truth = make_ground_truth(
    params.n, params.num_features, params.regime_spec, params.magnitude, params.data_seed
)
save_ground_truth(
    truth,
    snakemake.output.truth,
    {
        "regime": snakemake.wildcards.regime,
        "regime_spec": dict(params.regime_spec),
        "data_seed": params.data_seed,
        "expected_active_closed_form": expected_active_features(
            params.regime_spec, params.num_features
        ),
    },
)
