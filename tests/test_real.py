"""Case study 2's backbone on the real embedded model: hooks, the activation store,
spliced CE/KL, the SAELens export, table 1 and the run configuration."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, residual_by_shard

from saesanity.evals.metrics import RECONSTRUCTION_METRICS
from saesanity.evals.ravel import RavelConfigError, check_blocks_after_hook
from saesanity.sources.activation_store import (
    ActivationStore,
    StoreError,
    extract_activations,
    tokenise_windows,
)
from saesanity.sources.language_model import ModelSpec, ModelUnavailableError, load_language_model
from saesanity.studies.real import (
    _token_ce,
    build_splice_reference,
    load_splice_reference,
    splice_metrics,
    table1,
)
from saesanity.studies.runs import (
    ConfigError,
    check_config,
    real_metric_families,
    real_runs,
    real_table_l0,
    real_train_config,
    scaled_l0s,
    snapshot_points,
    table1_metrics,
)

TEXTS = [
    "The committee met on Tuesday to discuss the budget for the coming year.",
    "She walked along the river and counted the boats drifting past the old mill.",
    "Prices rose sharply after the announcement, surprising most analysts.",
    "In the second act, the king finally learns the truth about his daughter.",
]


@pytest.fixture(scope="module")
def windows(language_model):
    tokenizer = language_model.tokenizer
    return tokenise_windows(
        TEXTS * 3, tokenizer, context=16, bos_token_id=language_model.bos_token_id,
        max_windows=10, separator_token_id=tokenizer.eos_token_id,
    )  # fmt: skip


@pytest.fixture(scope="module")
def store_dir(language_model, windows, tmp_path_factory):
    out = tmp_path_factory.mktemp("store")
    extract_activations(language_model, windows, out, windows_per_shard=3)
    return out


def test_windows_start_with_bos_and_continue_the_text(language_model, windows):
    tokenizer = language_model.tokenizer
    assert windows.shape == (10, 16) and windows.dtype == np.int32
    assert (windows[:, 0] == language_model.bos_token_id).all()
    first = tokenizer(TEXTS[0], add_special_tokens=False)["input_ids"]
    assert windows[0, 1 : 1 + min(15, len(first))].tolist() == first[:15]
    # Window 2 continues where window 1 stopped (the stream is cut, not padded).
    stream = windows[:, 1:].reshape(-1).tolist()
    assert stream[: len(first)] == first


def test_hooked_activation_is_the_models_hidden_state(language_model, embedded_model_dir):
    from transformers import AutoModelForCausalLM

    tokens = torch.randint(0, 49152, (2, 12))
    tokens[:, 0] = language_model.bos_token_id
    hf_model = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32)
    with torch.no_grad():
        hidden = hf_model(tokens, output_hidden_states=True).hidden_states
    layer = language_model.spec.layer
    # hidden_states[0] is the embedding, [L + 1] the output of block L. (Norms are
    # ~200, so float32 kernel differences reach 1e-4 in absolute terms.)
    torch.testing.assert_close(
        language_model.residual(tokens), hidden[layer + 1], rtol=1e-4, atol=1e-3
    )
    assert not torch.allclose(language_model.residual(tokens), hidden[layer])


def test_restarting_from_the_hook_equals_the_full_forward(language_model):
    tokens = torch.randint(0, 49152, (2, 10))
    tokens[:, 0] = language_model.bos_token_id
    residual = language_model.residual(tokens)
    full = language_model.logits(tokens)
    torch.testing.assert_close(language_model.logits_from_hook(residual, tokens), full)
    # A replacement written by a hook in the full forward == restarting from it.
    noisy = residual + torch.randn_like(residual)
    hooked = language_model.logits_with_replacement(tokens, lambda activation: noisy)
    torch.testing.assert_close(language_model.logits_from_hook(noisy, tokens), hooked)
    assert not torch.allclose(hooked, full)


def test_spliced_logits_resume_in_the_blocks_after_the_hook_only_where_they_match(
    language_model, monkeypatch
):
    """Without TransformerLens 4.x's start_at_layer, the Hugging Face blocks after the
    hook are used once a window shows they give the full forward's logits; a model whose
    head does more (here a Gemma-2-style logit soft-cap) keeps full forwards."""
    tokens = torch.randint(0, 49152, (2, 10))
    tokens[:, 0] = language_model.bos_token_id
    noisy = language_model.residual(tokens) + 1.0
    hooked = language_model.logits_with_replacement(tokens, lambda activation: noisy)
    monkeypatch.setattr(language_model, "_starts_at_layer", False)
    monkeypatch.setattr(language_model, "_resumes_in_hf", None)
    torch.testing.assert_close(language_model.logits_from_hook(noisy, tokens), hooked)
    assert language_model._resumes_in_hf is True

    unembed = language_model.unembed
    monkeypatch.setattr(language_model, "unembed", lambda h: 30.0 * torch.tanh(unembed(h) / 30.0))
    monkeypatch.setattr(language_model, "_resumes_in_hf", None)
    torch.testing.assert_close(language_model.logits_from_hook(noisy, tokens), hooked)
    assert language_model._resumes_in_hf is False


def test_ravel_refuses_a_model_whose_blocks_after_the_hook_differ(language_model, monkeypatch):
    """RAVEL learns through the blocks after the hook, with no full-forward fallback:
    a head those blocks leave out (a Gemma-2-style soft-cap) is an error, not scores."""
    tokens = torch.randint(0, 49152, (12,))
    tokens[0] = language_model.bos_token_id
    data = SimpleNamespace(meta={"prompts": [{"tokens": tokens.tolist()}]})
    monkeypatch.setattr(language_model, "_resumes_in_hf", None)
    check_blocks_after_hook(language_model, data)  # SmolLM2: norm + lm_head, it matches
    assert language_model._resumes_in_hf is True

    unembed = language_model.unembed
    monkeypatch.setattr(language_model, "unembed", lambda h: 30.0 * torch.tanh(unembed(h) / 30.0))
    monkeypatch.setattr(language_model, "_resumes_in_hf", None)
    with pytest.raises(RavelConfigError, match="do not reproduce its full forward"):
        check_blocks_after_hook(language_model, data)


def test_store_round_trip_is_exact_and_leaves_out_bos(language_model, windows, store_dir):
    store = ActivationStore(store_dir)
    manifest = store.manifest
    assert manifest["tokens"] == 10 * 15 and len(manifest["shards"]) == 4
    assert manifest["hook"] == "blocks.14.hook_resid_post" and manifest["d_model"] == 576
    expected = residual_by_shard(language_model, windows)  # as extracted, 3 windows a shard
    stored = torch.cat(list(store.iter_batches(batch_size=7)))
    assert torch.equal(stored, expected.reshape(-1, 576))
    # The normalisation constant makes E||x||^2 = 1 over the stored tokens.
    assert (stored * store.input_scale).pow(2).sum(1).mean().item() == pytest.approx(1, rel=1e-4)
    # BOS is the outlier the store leaves out.
    assert manifest["bos_mean_squared_norm"] > 100 * manifest["mean_squared_norm"]


def test_shuffled_stream_is_a_seeded_permutation_per_epoch(store_dir):
    store = ActivationStore(store_dir, seed=3, shuffle_shards=2)
    all_tokens = torch.cat(list(store.iter_batches(batch_size=50)))
    # batch size 25 does not divide the 150 tokens' shards (45 + 45 + 45 + 15): batches
    # straddle shard groups and the epoch boundary.
    epoch = torch.cat([store.batch(step, 25) for step in range(6)])
    order = lambda x: x[torch.argsort(x[:, 0])]  # noqa: E731
    assert torch.equal(order(epoch), order(all_tokens))
    assert not torch.equal(epoch, all_tokens)
    again = ActivationStore(store_dir, seed=3, shuffle_shards=2)
    assert torch.equal(again.batch(4, 25), store.batch(4, 25))  # pure function of (seed, step)
    other = ActivationStore(store_dir, seed=4, shuffle_shards=2)
    assert not torch.equal(other.batch(0, 25), store.batch(0, 25))
    second_epoch = torch.cat([store.batch(step, 25) for step in range(6, 12)])
    assert torch.equal(order(second_epoch), order(all_tokens))
    assert not torch.equal(second_epoch, epoch)
    assert len(store._cache) <= 2  # bounded memory: at most two shard groups held


def test_corrupted_missing_or_mismatched_store_is_named(store_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(store_dir, broken)
    shard = broken / "shard_00001.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="shard_00001.npy.*sha256"):
        ActivationStore(broken)
    shard.unlink()
    with pytest.raises(StoreError, match="shard_00001.npy.*missing"):
        ActivationStore(broken)
    with pytest.raises(StoreError, match="layer = 14, expected 3"):
        ActivationStore(store_dir, expect={"layer": 3})
    with pytest.raises(StoreError, match="manifest.json"):
        ActivationStore(tmp_path / "nowhere")


def test_identity_and_zero_splices_give_the_reference_losses(language_model, windows, tmp_path):
    summary = build_splice_reference(language_model, windows[:4], tmp_path / "ref.st", 2)
    reference, loaded = load_splice_reference(tmp_path / "ref.st")
    assert loaded == summary
    identity = splice_metrics(language_model, lambda x: x, reference, summary, batch_size=3)
    assert identity["ce_loss"] == pytest.approx(summary["ce_clean"], abs=1e-5)
    assert identity["kl_divergence"] == pytest.approx(0, abs=1e-5)
    assert identity["ce_loss_score"] == pytest.approx(1, abs=1e-5)
    # Zero-ablation (SAEBench: every position, BOS included) through the model's own
    # hook in a full forward pass gives the reference's zero-ablation CE.
    tokens = torch.from_numpy(windows[:4]).long()
    zero_logits = language_model.logits_with_replacement(tokens, torch.zeros_like)
    assert float(_token_ce(zero_logits, tokens).mean()) == pytest.approx(
        summary["ce_zero_ablation"], rel=1e-5
    )
    assert summary["ce_zero_ablation"] > summary["ce_clean"] + 1
    # Zeroing all but BOS is worse than the clean model and scores below 1.
    zeroed = splice_metrics(language_model, torch.zeros_like, reference, summary, batch_size=4)
    assert zeroed["ce_loss"] > summary["ce_clean"] and zeroed["ce_loss_score"] < 0.5


def test_offline_hub_model_fails_clearly():
    spec = ModelSpec(name="google/gemma-2-2b", layer=12)
    with pytest.raises(ModelUnavailableError, match="google/gemma-2-2b.*HF_HUB_OFFLINE"):
        load_language_model(spec)


def test_l0_sweep_scales_with_width_and_snapshots_hit_batches():
    assert scaled_l0s(2304) == [80, 115, 160, 225, 320]
    assert scaled_l0s(576) == [20, 29, 40, 56, 80]
    points = snapshot_points(2_457_600, 4096, [0.05, 0.1])
    assert points == [30 * 4096, 60 * 4096]
    assert snapshot_points(1000, 256, [0.05]) == [256]  # at least one batch


def _config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_real_run_configs_follow_the_config():
    config = _config()
    runs = real_runs(config)
    keys = {(r["architecture"], r["variant"], r["init"], r["target_l0"]) for r in runs}
    assert ("jumprelu", "frozen_decoder", "cov", config["real"]["table_l0"]) in keys
    assert ("jumprelu", "soft_frozen_decoder", "iso", config["real"]["table_l0"]) in keys
    relu = real_train_config(config, "relu", "trained", "iso", 40, 0)
    assert relu["l1_coefficient"] == config["real"]["by_l0"]["relu"][40]["l1_coefficient"]
    assert relu["d_sae"] == config["real"]["expansion"] * 576 and relu["k"] == 40
    assert relu["snapshot_samples"]  # trained runs snapshot the decoder
    assert "snapshot_samples" not in real_train_config(
        config, "topk", "frozen_decoder", "cov", 40, 0
    )


def test_relu_l1_overrides_apply_per_variant_and_init():
    config = _config()
    config["real"]["by_l0"]["relu"] = {
        40: {"l1_coefficient": 0.1},
        "40/frozen_decoder": {"l1_coefficient": 0.2},
        "40/frozen_decoder/cov": {"l1_coefficient": 0.3},
    }
    l1 = {
        (variant, init): real_train_config(config, "relu", variant, init, 40, 0)["l1_coefficient"]
        for variant, init in [
            ("trained", "iso"),
            ("frozen_decoder", "iso"),
            ("frozen_decoder", "cov"),
        ]
    }
    assert l1 == {("trained", "iso"): 0.1, ("frozen_decoder", "iso"): 0.2,
                  ("frozen_decoder", "cov"): 0.3}  # fmt: skip
    # Another L0 is untouched by the 40/... keys.
    assert "l1_coefficient" not in real_train_config(config, "relu", "frozen_decoder", "cov", 20, 0)


@pytest.mark.parametrize("key", ["40/frozen", "40/trained/gauss", "forty"])
def test_bad_l0_override_key_is_rejected_by_the_schema(key):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    config = _config()
    config["real"]["by_l0"]["relu"][key] = {"l1_coefficient": 0.2}
    with pytest.raises(WorkflowError, match="by_l0"):
        validate(config, str(REPO / "schemas/config.schema.yaml"))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r.update(table_l0=33), "real.table_l0: 33"),
        (lambda r: r.update(enabled_runs=["nope"]), "real.enabled_runs: 'nope'"),
        (lambda r: r["training"].update(k=3), "real.training.k"),
        (lambda r: r["runs"]["table_l0"].update(l0s=[7]), "real.runs.table_l0.l0s: 7"),
    ],
)
def test_inconsistent_real_config_is_named(edit, message):
    config = _config()
    edit(config["real"])
    with pytest.raises(ConfigError, match=message):
        check_config(config)


def test_table1_reports_mean_std_and_best_frozen_minus_trained():
    rows = []
    for seed, (trained, frozen_dec, frozen_enc) in enumerate([(0.8, 0.6, 0.7), (0.9, 0.5, 0.75)]):
        for variant, init, ev, ce in [
            ("trained", "iso", trained, 3.0),
            ("frozen_decoder", "cov", frozen_dec, 3.5),
            ("frozen_encoder", "iso", frozen_enc, 3.2),
        ]:
            rows.append(
                {"architecture": "topk", "variant": variant, "init": init, "target_l0": 40,
                 "seed": seed, "explained_variance": ev, "ce_loss": ce + seed * 0.1}
            )  # fmt: skip
            rows.append({**rows[-1], "target_l0": 20, "explained_variance": 0.1})
    table = table1(pd.DataFrame(rows), l0=40, columns=["explained_variance", "ce_loss"])
    trained = table[table["variant"] == "trained"].iloc[0]
    assert trained["explained_variance_mean"] == pytest.approx(0.85)
    assert trained["explained_variance_std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert trained["seeds"] == 2
    delta = table[table["variant"] == "best frozen - trained (%)"].iloc[0]
    # Best frozen EV is the frozen encoder's 0.725: (0.725 - 0.85) / 0.85.
    assert delta["explained_variance_mean"] == pytest.approx(100 * (0.725 - 0.85) / 0.85)
    # For CE, lower is better: the frozen encoder's 3.25 vs trained 3.05.
    assert delta["ce_loss_mean"] == pytest.approx(100 * (3.25 - 3.05) / 3.05)
    assert math.isnan(delta["ce_loss_std"])
    with pytest.raises(ValueError, match="no run has target L0 80"):
        table1(pd.DataFrame(rows), l0=80)


def test_outlier_tokens_are_left_out_of_the_stream(store_dir):
    everything = ActivationStore(store_dir)
    all_tokens = torch.cat(list(everything.iter_batches(batch_size=64)))
    norms = all_tokens.norm(dim=1)
    factor = float(norms.max() / norms.median()) * 0.99  # drops exactly the largest norm(s)
    filtered = ActivationStore(store_dir, outlier_factor=factor, shuffle_shards=2)
    kept = norms <= factor * everything.median_norm
    assert filtered.outliers_dropped == int((~kept).sum()) >= 1
    assert filtered.n_tokens == int(kept.sum())
    torch.testing.assert_close(torch.cat(list(filtered.iter_batches(50))), all_tokens[kept])
    epoch = torch.cat([filtered.batch(step, filtered.n_tokens) for step in range(1)])
    assert epoch.norm(dim=1).max() <= factor * everything.median_norm
    expected_scale = 1 / all_tokens[kept].pow(2).sum(1).mean().sqrt()
    assert filtered.input_scale == pytest.approx(float(expected_scale), rel=1e-5)


def test_outliers_stay_clean_when_splicing(language_model, windows, tmp_path):
    summary = build_splice_reference(language_model, windows[:4], tmp_path / "ref.st", 4)
    reference, _ = load_splice_reference(tmp_path / "ref.st")
    everywhere = splice_metrics(language_model, torch.zeros_like, reference, summary, 4)
    # A factor of 1 leaves every token above the median norm clean: half the positions.
    half = splice_metrics(language_model, torch.zeros_like, reference, summary, 4, 1.0)
    assert everywhere["spliced_fraction"] == 1.0
    assert half["spliced_fraction"] == pytest.approx(0.5, abs=0.05)
    assert half["ce_loss"] < everywhere["ce_loss"]


def test_metric_families_and_table1_columns_follow_the_config():
    config = _config()
    table_l0 = real_table_l0(config)
    families = real_metric_families(config)
    assert list(families) == ["reconstruction", "autointerp", "sparse_probing", "ravel"]
    assert families["autointerp"] == [table_l0] and families["reconstruction"] is None
    columns = table1_metrics(config)
    assert columns[: len(RECONSTRUCTION_METRICS)] == RECONSTRUCTION_METRICS
    assert columns[len(RECONSTRUCTION_METRICS) :] == [
        "autointerp_score", "sae_top_1_test_accuracy", "sae_top_5_test_accuracy",
        "ravel_disentanglement",
    ]  # fmt: skip
    # A family that skips the table's L0 joins other L0s' tables but not table 1.
    config["ravel"]["l0s"] = [table_l0 + 1]
    config["sparse_probing"]["ks"] = [1, 2]
    config["autointerp"]["enabled"] = False
    assert "autointerp" not in real_metric_families(config)
    assert real_metric_families(config)["ravel"] == [table_l0 + 1]
    assert table1_metrics(config)[len(RECONSTRUCTION_METRICS) :] == ["sae_top_1_test_accuracy"]


def test_final_decoder_drift_on_a_hand_made_decoder(tmp_path):
    """Rows at cosines 1, 0.9, 0.5 and 0 to their initial directions: median 0.7, half of
    them outside the 0.8 cap; nothing for an SAE saved without its initial decoder."""
    from safetensors.torch import save_file

    from saesanity.studies.real import final_decoder_drift

    initial = torch.eye(4)
    rows = []
    for index, cosine in enumerate([1.0, 0.9, 0.5, 0.0]):
        other = (index + 1) % 4  # an orthogonal direction
        rows.append(cosine * initial[index] + math.sqrt(1 - cosine**2) * initial[other])
    save_file({"W_dec": torch.stack(rows), "W_dec_init": initial}, tmp_path / "sae.safetensors")
    drift = final_decoder_drift(tmp_path / "sae.safetensors", tau=0.8)
    assert drift["decoder_median_cosine_to_init"] == pytest.approx(0.7)
    assert drift["decoder_fraction_outside_cap"] == 0.5
    assert final_decoder_drift(tmp_path / "sae.safetensors", tau=0.4)[
        "decoder_fraction_outside_cap"
    ] == pytest.approx(0.25)
    save_file({"W_dec": torch.stack(rows)}, tmp_path / "user.safetensors")
    assert final_decoder_drift(tmp_path / "user.safetensors", tau=0.8) == {}


def test_rows_held_on_the_cap_boundary_count_as_inside(tmp_path):
    """The Soft-Frozen Decoder's projection leaves rows at cos = tau up to float32
    rounding: none of them is outside the cap; a row just beyond it is."""
    from safetensors.torch import save_file

    from saesanity.core.sae import project_to_caps
    from saesanity.studies.real import final_decoder_drift

    generator = torch.Generator().manual_seed(0)
    initial = torch.nn.functional.normalize(torch.randn(512, 64, generator=generator), dim=1)
    moved = torch.nn.functional.normalize(torch.randn(512, 64, generator=generator), dim=1)
    held = project_to_caps(moved, initial, tau=0.8)
    cosine = (held * initial).sum(1)
    assert (cosine < 0.8).any(), "the test needs rows a rounding error below tau"
    save_file({"W_dec": held, "W_dec_init": initial}, tmp_path / "soft.safetensors")
    assert (
        final_decoder_drift(tmp_path / "soft.safetensors", 0.8)["decoder_fraction_outside_cap"]
        == 0.0
    )
    beyond = project_to_caps(moved, initial, tau=0.79)
    save_file({"W_dec": beyond, "W_dec_init": initial}, tmp_path / "beyond.safetensors")
    assert (
        final_decoder_drift(tmp_path / "beyond.safetensors", 0.8)["decoder_fraction_outside_cap"]
        == 1.0
    )


def test_only_the_extraction_takes_the_configured_precision():
    """`real.activations.precision` reaches the stores' forward passes; every other
    forward pass (splicing, probing, RAVEL, AutoInterp) runs the float32 spec."""
    from saesanity.sources.language_model import ModelSpec
    from saesanity.studies.runs import real_extraction_spec, real_model_spec

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["real"]["activations"]["precision"] = "bfloat16"
    assert ModelSpec(**real_extraction_spec(config)).precision == "bfloat16"
    assert ModelSpec(**real_model_spec(config)).precision == "float32"
    config["real"]["activations"]["precision"] = "half"
    with pytest.raises(ValueError, match="real.activations.precision = 'half'"):
        ModelSpec(**real_extraction_spec(config))
