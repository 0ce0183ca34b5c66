"""The synthetic generator and the evaluation metrics."""

import pytest
import torch

from saesanity.core.architectures import make_sae
from saesanity.core.checkpoint import load_sae, save_sae
from saesanity.core.sae import unit_sphere_directions
from saesanity.evals.metrics import explained_variance, feature_recovery, recovery_summary
from saesanity.sources.synthetic import (
    SyntheticSource,
    expected_active_features,
    load_ground_truth,
    make_ground_truth,
    sample_active,
    save_ground_truth,
)
from saesanity.studies.synthetic import random_decoder_recovery, run_from_path

MAGNITUDE = {"mu": 0.0, "sigma": 0.25}
CONSTANT = {"law": "constant", "p": 0.00625}
VARIABLE = {"law": "loguniform", "log10_min": -5.5, "log10_max": -1.2}


@pytest.mark.parametrize("regime", [CONSTANT, VARIABLE])
def test_mean_number_of_active_features_is_twenty(regime):
    truth = make_ground_truth(100, 3200, regime, MAGNITUDE, 0)
    source = SyntheticSource(truth, 0)
    counts = [len(source.sample(step, 4096)[1]) / 4096 for step in range(5)]
    mean = sum(counts) / len(counts)
    # 20.0 (constant) or ~20.4 (variable, closed form); this draw of p_i gives its own sum.
    assert expected_active_features(regime, 3200) == pytest.approx(20.0, abs=0.5)
    assert mean == pytest.approx(truth.expected_active(), rel=0.03)
    assert mean == pytest.approx(20.0, abs=1.5)


def test_bernoulli_draws_are_exact_per_feature():
    """Geometric-gap sampling matches Bernoulli(p_i) frequencies, including tiny and large p."""
    probabilities = torch.tensor([1e-4, 0.003, 0.05, 0.3, 0.9])
    generator = torch.Generator().manual_seed(0)
    totals = torch.zeros(5)
    batches, batch_size = 50, 4096
    for _ in range(batches):
        samples, features = sample_active(probabilities, batch_size, generator)
        totals += torch.bincount(features, minlength=5).float()
        # No (sample, feature) pair twice: at most one success per trial.
        pairs = samples * 5 + features
        assert len(torch.unique(pairs)) == len(pairs)
        assert samples.min() >= 0 and samples.max() < batch_size
    frequencies = totals / (batches * batch_size)
    expected_sd = (probabilities * (1 - probabilities) / (batches * batch_size)).sqrt()
    assert ((frequencies - probabilities).abs() < 5 * expected_sd + 1e-5).all()


def test_samples_are_sums_of_scaled_features():
    truth = make_ground_truth(20, 50, {"law": "constant", "p": 0.1}, MAGNITUDE, 3)
    x, samples, features = SyntheticSource(truth, 1).sample(0, 64)
    # Each sample lies in the span of its active features with positive coefficients.
    for row in range(8):
        active = truth.features[features[samples == row]]
        if len(active) == 0:
            assert torch.equal(x[row], torch.zeros(20))
            continue
        coefficients = torch.linalg.lstsq(active.T, x[row].unsqueeze(1)).solution.squeeze(1)
        assert torch.allclose(active.T @ coefficients, x[row], atol=1e-4)
        assert (coefficients > 0).all()


def test_batches_are_reproducible_and_streams_independent():
    truth = make_ground_truth(16, 64, {"law": "constant", "p": 0.05}, MAGNITUDE, 0)
    train = SyntheticSource(truth, 7, "train")
    assert torch.equal(train.batch(3, 128), SyntheticSource(truth, 7, "train").batch(3, 128))
    assert not torch.equal(train.batch(3, 128), train.batch(4, 128))
    assert not torch.equal(train.batch(3, 128), SyntheticSource(truth, 7, "eval").batch(3, 128))
    assert not torch.equal(train.batch(3, 128), SyntheticSource(truth, 8, "train").batch(3, 128))


def test_ground_truth_round_trip(tmp_path):
    truth = make_ground_truth(16, 64, VARIABLE, MAGNITUDE, 5)
    save_ground_truth(truth, tmp_path / "gt.safetensors", {"regime": "variable"})
    loaded = load_ground_truth(tmp_path / "gt.safetensors")
    assert torch.equal(loaded.features, truth.features)
    assert torch.equal(loaded.probabilities, truth.probabilities)
    assert loaded.magnitude_sigma == 0.25
    assert ((truth.probabilities >= 10**-5.5) & (truth.probabilities <= 10**-1.2)).all()


def test_recovery_is_one_for_the_true_dictionary_and_chance_for_random():
    truth = make_ground_truth(100, 3200, CONSTANT, MAGNITUDE, 0)
    perfect, index = feature_recovery(truth.features, truth.features[torch.randperm(3200)] * 2.0)
    assert torch.allclose(perfect, torch.ones(3200), atol=1e-5)
    assert recovery_summary(perfect, 0.8)["recovered_fraction"] == 1.0
    random_decoder = unit_sphere_directions(3200, 100, torch.Generator().manual_seed(9))
    chance, _ = feature_recovery(truth.features, random_decoder)
    summary = recovery_summary(chance, 0.8)
    assert summary["recovered_count"] == 0
    assert 0.3 < summary["mean_max_cosine"] < 0.5
    assert summary["mean_max_cosine"] == pytest.approx(
        random_decoder_recovery(100, 3200, 3200), abs=0.02
    )


def test_explained_variance_is_one_for_perfect_and_zero_for_mean():
    x = torch.randn(1000, 10) * 3 + 5
    assert explained_variance(x, x) == pytest.approx(1.0)
    assert explained_variance(x, x.mean(0).expand_as(x)) == pytest.approx(0.0, abs=1e-9)
    # Not the variance about zero: a constant offset in x does not inflate EV.
    noisy = x + torch.randn(1000, 10)
    assert explained_variance(noisy, x) == pytest.approx(1 - 1 / 9, abs=0.02)


def test_checkpoint_round_trip(tmp_path):
    sae = make_sae("batchtopk", 8, 32, k=3)
    sae.initialise(unit_sphere_directions(32, 8, torch.Generator().manual_seed(0)), torch.ones(8))
    sae.inference_threshold.fill_(0.3)
    sae.input_scale.fill_(0.5)
    save_sae(sae, tmp_path / "sae.safetensors", tmp_path / "sae.json", {"note": 1})
    loaded = load_sae(tmp_path / "sae.safetensors", tmp_path / "sae.json")
    x = torch.randn(20, 8)
    assert torch.equal(sae(x), loaded(x))


def test_run_identity_from_path():
    path = "results/synthetic/variable/runs/topk/frozen_decoder/cov/seed12/recovery.csv"
    assert run_from_path(path) == {
        "regime": "variable", "architecture": "topk", "variant": "frozen_decoder",
        "init": "cov", "seed": 12,
    }  # fmt: skip


def test_mcc_is_one_for_the_true_dictionary_in_any_order_and_sign_and_low_for_random():
    from saesanity.evals.metrics import feature_uniqueness, mean_correlation_coefficient

    generator = torch.Generator().manual_seed(0)
    features = torch.nn.functional.normalize(torch.randn(200, 64, generator=generator), dim=1)
    signs = torch.where(torch.rand(200, generator=generator) < 0.5, -1.0, 1.0)
    shuffled = features[torch.randperm(200, generator=generator)] * signs[:, None]
    assert mean_correlation_coefficient(shuffled, features) == pytest.approx(1.0, abs=1e-9)
    assert feature_uniqueness(shuffled, features) == 1.0
    # Random directions: chance is what the best one-to-one matching of two independent
    # random sets reaches (|cos| ~ 0.1 per pair in 64 dimensions, ~0.35 after matching).
    random = torch.randn(200, 64, generator=generator)
    chance = mean_correlation_coefficient(torch.randn(200, 64, generator=generator), features)
    assert mean_correlation_coefficient(random, features) == pytest.approx(chance, abs=0.05)
    assert chance < 0.5


def test_latent_classification_counts_equal_the_dense_masks():
    from saesanity.evals.metrics import _abs_cosines, latent_classification

    truth = make_ground_truth(16, 48, {"law": "constant", "p": 0.1}, MAGNITUDE, seed=3)
    source = SyntheticSource(truth, seed=1, stream="eval")
    sae = make_sae("topk", 16, 40, k=4)
    # Half the latents start on true features (they detect something), half at random.
    generator = torch.Generator().manual_seed(2)
    directions = torch.cat([truth.features[:20], unit_sphere_directions(20, 16, generator)])
    sae.initialise(directions, torch.zeros(16), 1.0)
    # The dense definition (SAELens's masks), over three batches.
    best = _abs_cosines(sae.W_dec.detach(), truth.features).argmax(dim=1)
    counts = torch.zeros(4, 40, dtype=torch.float64)
    for step in range(3):
        x, sample_index, feature_index = source.sample(step, 64)
        active = torch.zeros(64, 48, dtype=torch.bool)
        active[sample_index, feature_index] = True
        active = active[:, best]
        fires = sae.encode(x) != 0
        for row, mask in enumerate([fires & active, fires & ~active, ~fires & active]):
            counts[row] += mask.sum(0)
        counts[3] += (~fires & ~active).sum(0)
    tp, fp, fn, tn = counts
    assert tp.sum() > 0 and fp.sum() > 0 and fn.sum() > 0  # every case occurs
    precision = torch.where(tp + fp > 0, tp / (tp + fp), torch.zeros_like(tp))
    recall = torch.where(tp + fn > 0, tp / (tp + fn), torch.zeros_like(tp))
    result = latent_classification(sae, source, num_samples=3 * 64, batch_size=64)
    assert result["latent_precision"] == float(precision.mean())
    assert result["latent_recall"] == float(recall.mean())
    assert result["latent_accuracy"] == float(((tp + tn) / counts.sum(0)).mean())
