"""The shared trainer: variants, invariants after every step, resume, determinism."""

import json

import pytest
import torch
from safetensors.torch import load_file

from saesanity.core.checkpoint import load_sae
from saesanity.core.training import TrainConfig, learning_rate, plateaued, train
from saesanity.sources.synthetic import SyntheticSource, make_ground_truth

TRUTH = make_ground_truth(16, 64, {"law": "constant", "p": 0.0625}, {"mu": 0, "sigma": 0.25}, 0)


def small_config(**overrides) -> TrainConfig:
    values = dict(
        architecture="topk", d_sae=64, k=4, batch_size=128, max_samples=128 * 30,
        min_samples=0, warmup_steps=3, normalisation_batches=2, covariance_batches=2,
        dead_after_samples=128 * 5, threshold_start_step=2, log_every_steps=5,
        checkpoint_every_steps=4, l1_warmup_steps=3, sparsity_warmup_steps=5, l1_coefficient=0.01,
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def run(config, tmp_path, name="run", **kwargs):
    return train(
        config, SyntheticSource(TRUTH, config.seed), tmp_path / name, progress=False, **kwargs
    )


ARCHITECTURES = ["relu", "topk", "batchtopk", "jumprelu", "matryoshka"]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_trained_decoder_rows_have_unit_norm(architecture, tmp_path):
    sae = run(small_config(architecture=architecture), tmp_path)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-5)
    assert (tmp_path / "run" / "sae.safetensors").exists()
    assert not (tmp_path / "run" / "train_state.pt").exists()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_training_reduces_reconstruction_error(architecture, tmp_path):
    import pandas as pd

    run(small_config(architecture=architecture, max_samples=128 * 60, lr=3e-3), tmp_path)
    curve = pd.read_csv(tmp_path / "run" / "curve.csv")
    assert curve["mse"].iloc[-1] < 0.7 * curve["mse"].iloc[0]


@pytest.mark.parametrize(
    "variant, frozen", [("frozen_decoder", "W_dec"), ("frozen_encoder", "W_enc")]
)
def test_frozen_tensors_are_bit_identical_after_training(variant, frozen, tmp_path):
    sae = run(small_config(variant=variant), tmp_path)
    initial = load_file(tmp_path / "run" / "sae.safetensors")["W_dec_init"]
    assert torch.equal(getattr(sae, frozen).detach(), initial)
    other = "W_enc" if frozen == "W_dec" else "W_dec"
    assert not torch.equal(getattr(sae, other).detach(), initial)  # the other side trained


def test_soft_frozen_rows_stay_in_cap_after_every_step(tmp_path):
    config = small_config(variant="soft_frozen_decoder", soft_freeze_tau=0.95, lr=3e-2)
    anchors = None
    moved = False
    for _ in range(config.max_steps):  # one optimiser step per call, resuming each time
        sae = run(config, tmp_path, stop_after_steps=1)
        if anchors is None:
            anchors = torch.load(tmp_path / "run" / "train_state.pt", weights_only=False)["anchors"]
        cosines = (sae.W_dec.detach() * anchors).sum(1)
        assert (cosines >= 0.95 - 1e-5).all()
        moved |= bool((cosines < 0.999).any())
    assert moved  # the cap was actually exercised


def test_same_seed_gives_same_initialisation_across_variants(tmp_path):
    inits = []
    for variant in ["trained", "frozen_decoder", "soft_frozen_decoder", "frozen_encoder"]:
        run(small_config(variant=variant, max_samples=128), tmp_path, variant)
        inits.append(load_file(tmp_path / variant / "sae.safetensors")["W_dec_init"])
    assert all(torch.equal(inits[0], other) for other in inits[1:])
    run(small_config(seed=1, max_samples=128), tmp_path, "seed1")
    assert not torch.equal(
        inits[0], load_file(tmp_path / "seed1" / "sae.safetensors")["W_dec_init"]
    )


@pytest.mark.parametrize("architecture", ["batchtopk", "jumprelu"])
def test_resume_after_interruption_gives_identical_weights(architecture, tmp_path):
    config = small_config(architecture=architecture)
    uninterrupted = run(config, tmp_path, "straight")
    # Killed after 7 steps (last checkpoint at step 4 is not used: the state is
    # saved on interruption too); then killed again after 9 more; then finished.
    run(config, tmp_path, "resumed", stop_after_steps=7)
    assert (tmp_path / "resumed" / "train_state.pt").exists()
    run(config, tmp_path, "resumed", stop_after_steps=9)
    resumed = run(config, tmp_path, "resumed")
    for name, tensor in uninterrupted.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    meta = json.loads((tmp_path / "resumed" / "sae.json").read_text())
    assert meta["steps"] == config.max_steps


def test_a_state_past_a_snapshot_that_is_gone_starts_again(tmp_path):
    """A forced rerun deletes a run's outputs (its snapshots too) but not its saved state;
    resuming past a snapshot point would never write that snapshot again."""
    config = small_config(snapshot_samples=[128 * 4, 128 * 20])
    complete = run(config, tmp_path, "complete")
    run(config, tmp_path, stop_after_steps=9)
    early = tmp_path / "run" / "snapshots" / "samples512.safetensors"
    assert early.exists()
    early.unlink()
    resumed = run(config, tmp_path)
    assert early.exists()
    for name, tensor in complete.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    # With every earlier snapshot in place the state is resumed, not retrained.
    run(config, tmp_path, "kept", stop_after_steps=9)
    kept = run(config, tmp_path, "kept", stop_after_steps=1)
    state = torch.load(tmp_path / "kept" / "train_state.pt", weights_only=False)
    assert state["state"]["step"] == 10 and kept is not None


def test_resume_state_from_a_different_config_is_ignored(tmp_path):
    run(small_config(), tmp_path, stop_after_steps=5)
    sae = run(small_config(lr=1e-3), tmp_path)
    reference = run(small_config(lr=1e-3), tmp_path, "reference")
    assert torch.equal(sae.W_dec, reference.W_dec)


def test_same_config_and_seed_give_the_same_numbers(tmp_path):
    first = run(small_config(architecture="matryoshka"), tmp_path, "a")
    second = run(small_config(architecture="matryoshka"), tmp_path, "b")
    assert torch.equal(first.W_enc, second.W_enc)
    assert (tmp_path / "a" / "curve.csv").read_text() == (tmp_path / "b" / "curve.csv").read_text()


def test_batchtopk_threshold_is_estimated_and_saved(tmp_path):
    run(small_config(architecture="batchtopk"), tmp_path)
    sae = load_sae(tmp_path / "run" / "sae.safetensors", tmp_path / "run" / "sae.json")
    assert sae.inference_threshold.item() > 0
    x = SyntheticSource(TRUTH, 5, "eval").batch(0, 1024)
    l0 = sae.encode_sparse(x).l0_per_sample().mean().item()
    assert 2 < l0 < 8  # thresholded inference lands near k = 4


def test_jumprelu_hits_target_l0_without_tuning(tmp_path):
    run(small_config(architecture="jumprelu", max_samples=128 * 150, lr=2e-3), tmp_path)
    sae = load_sae(tmp_path / "run" / "sae.safetensors", tmp_path / "run" / "sae.json")
    x = SyntheticSource(TRUTH, 5, "eval").batch(0, 2048)
    l0 = sae.encode_sparse(x).l0_per_sample().mean().item()
    assert 2 < l0 < 8


def test_plateau_stop_and_lr_schedule():
    config = small_config(plateau_rel_tol=0.01, plateau_window_samples=128 * 5, min_samples=0)
    assert plateaued(config, [1.0] * 10)
    assert not plateaued(config, [2.0] * 5 + [1.0] * 5)
    assert not plateaued(config, [1.0] * 9)  # not at a window boundary
    assert not plateaued(small_config(plateau_rel_tol=0.0), [1.0] * 10)
    decaying = small_config(warmup_steps=10, decay_fraction=0.5, max_samples=128 * 100)
    assert learning_rate(decaying, 0) == pytest.approx(decaying.lr / 10)
    assert learning_rate(decaying, 20) == pytest.approx(decaying.lr)
    assert learning_rate(decaying, 75) == pytest.approx(decaying.lr / 2)


@pytest.mark.parametrize(
    "key, value",
    [("architecture", "gated"), ("soft_freeze_tau", 1.5), ("soft_freeze_tau", 0.0),
     ("max_samples", -5), ("variant", "half_frozen"), ("init", "xavier")],
)  # fmt: skip
def test_bad_train_config_names_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        small_config(**{key: value})


def test_snapshots_are_written_at_the_requested_sample_counts(tmp_path):
    run(small_config(snapshot_samples=[128 * 10, 128 * 20]), tmp_path)
    snapshots = sorted(p.name for p in (tmp_path / "run" / "snapshots").glob("*.safetensors"))
    assert snapshots == ["samples1280.safetensors", "samples2560.safetensors"]
    early = load_sae(
        tmp_path / "run/snapshots/samples1280.safetensors",
        tmp_path / "run/snapshots/samples1280.json",
    )
    final = load_sae(tmp_path / "run/sae.safetensors", tmp_path / "run/sae.json")
    assert not torch.equal(early.W_enc, final.W_enc)


# JSON-schema types that accept each TrainConfig annotation.
SCHEMA_TYPES = {
    "int": "integer",
    "float": "number",
    "str": "string",
    "list": "array",
    "tuple": "array",
}


def schema_type(spec: dict, defs: dict) -> str:
    while "$ref" in spec:
        spec = defs[spec["$ref"].rsplit("/", 1)[1]]
    if "enum" in spec:
        return "string" if all(isinstance(v, str) for v in spec["enum"]) else "mixed"
    return spec["type"]


def test_the_schemas_training_section_is_trainconfig():
    """One source of truth for training settings: the schema's `training` section lists
    exactly the TrainConfig fields a config may set (the run's identity and shape are set
    per run), each with the type of its annotation."""
    from dataclasses import fields
    from pathlib import Path

    import yaml

    from saesanity.studies.runs import RUN_SET_FIELDS

    schema = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml").read_text()
    )
    defs = schema["$defs"]
    section = defs["training"]["properties"]
    settable = {f.name: f for f in fields(TrainConfig) if f.name not in RUN_SET_FIELDS}
    assert set(section) == set(settable), (
        f"in TrainConfig only: {sorted(set(settable) - set(section))}; "
        f"in the schema only: {sorted(set(section) - set(settable))}"
    )
    for name, field in settable.items():
        # "int | None" -> int; "tuple[float, float]" -> tuple
        base = str(field.type).split("|")[0].split("[")[0].strip()
        assert schema_type(section[name], defs) == SCHEMA_TYPES[base], name


# ------------------------------------------------------------------------- precision
def eval_ev_and_l0(sae) -> tuple[float, float]:
    x = SyntheticSource(TRUTH, 5, "eval").batch(0, 2048)
    code = sae.encode_sparse(x)
    x_hat = sae.decode_sparse(code)
    ev = 1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    return float(ev), float(code.l0_per_sample().mean())


def test_precision_auto_is_float32_without_native_bf16(tmp_path, monkeypatch):
    from saesanity.core import precision

    assert precision.resolve_precision("auto", "cpu", flags=set()) == "float32"
    assert precision.resolve_precision("auto", "cpu", flags={"amx_bf16"}) == "bfloat16"
    assert precision.resolve_precision("auto", "cpu", flags={"avx512_bf16"}) == "bfloat16"
    assert precision.resolve_precision("bfloat16", "cpu", flags=set()) == "bfloat16"
    # The trainer asks the same detection: a CPU without the flags trains in float32,
    # bit for bit like precision: float32, and says so in sae.json.
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "fma"})
    auto = run(small_config(precision="auto"), tmp_path, "auto")
    plain = run(small_config(precision="float32"), tmp_path, "plain")
    assert json.loads((tmp_path / "auto" / "sae.json").read_text())["precision"] == "float32"
    assert torch.equal(auto.W_enc, plain.W_enc)
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "amx_bf16"})
    run(small_config(precision="auto"), tmp_path, "amx")
    assert json.loads((tmp_path / "amx" / "sae.json").read_text())["precision"] == "bfloat16"


def test_a_saved_state_resumes_only_in_its_own_precision(tmp_path, monkeypatch):
    """`auto` can resolve differently on the node that resumes a run: the state of a
    float32 run must not be continued in bf16 (nor the reverse)."""
    from saesanity.core import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: set())
    run(small_config(precision="auto"), tmp_path, stop_after_steps=5)
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"amx_bf16"})
    resumed = run(small_config(precision="auto"), tmp_path)
    fresh = run(small_config(precision="bfloat16"), tmp_path, "fresh")
    assert torch.equal(resumed.W_enc, fresh.W_enc)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_bf16_training_matches_float32(architecture, tmp_path):
    """bf16 autocast changes rounding, not what is learned: the same L0 (TopK: exactly k)
    and an EV within 0.02 of float32's after the same steps (docs/trainer.md gives the
    measured differences at full size)."""
    config = dict(architecture=architecture, max_samples=128 * 60, lr=3e-3)
    ev32, l0_32 = eval_ev_and_l0(run(small_config(**config), tmp_path, "f32"))
    ev16, l0_16 = eval_ev_and_l0(run(small_config(**config, precision="bfloat16"), tmp_path))
    meta = json.loads((tmp_path / "run" / "sae.json").read_text())
    assert meta["precision"] == "bfloat16"
    assert abs(ev16 - ev32) <= 0.02, (ev16, ev32)
    if architecture == "topk":
        assert l0_16 == l0_32 == 4
    assert abs(l0_16 - l0_32) <= 0.05 * l0_32 + 0.1, (l0_16, l0_32)


def test_truth_init_starts_the_decoder_at_the_ground_truth(tmp_path):
    """The reference SAE: decoder = the true dictionary, kept frozen; the encoder learns."""
    sae = run(small_config(variant="frozen_decoder", init="truth"), tmp_path)
    assert torch.allclose(sae.W_dec.detach(), TRUTH.features, atol=1e-6)  # renormalised
    assert not torch.equal(sae.W_enc.detach(), TRUTH.features)  # trained
    with pytest.raises(ValueError, match="d_sae = 32, but the ground truth has 64 features"):
        run(small_config(init="truth", d_sae=32), tmp_path, "narrow")


class GaussianSource:
    """Data without known features (like an activation store)."""

    d_in, identity = 16, "gaussian"

    def batch(self, step: int, batch_size: int) -> torch.Tensor:
        return torch.randn(batch_size, self.d_in, generator=torch.Generator().manual_seed(step))


def test_truth_init_needs_data_with_known_features(tmp_path):
    with pytest.raises(ValueError, match="init = 'truth' needs data with known features"):
        train(small_config(init="truth"), GaussianSource(), tmp_path / "run", progress=False)


@pytest.mark.parametrize("architecture", ["batchtopk", "jumprelu"])
def test_a_snapshot_at_n_samples_is_the_n_sample_run(architecture, tmp_path):
    """Length studies evaluate snapshots of one long run as if they were shorter runs:
    with a constant learning rate that is exact, weights and inference threshold alike."""
    n = 128 * 12
    long = small_config(architecture=architecture, max_samples=128 * 30, snapshot_samples=[n])
    run(long, tmp_path, "long")
    run(small_config(architecture=architecture, max_samples=n), tmp_path, "short")
    snapshot = load_file(tmp_path / "long" / "snapshots" / f"samples{n}.safetensors")
    short = load_file(tmp_path / "short" / "sae.safetensors")
    assert snapshot.keys() == short.keys()
    for name, tensor in short.items():
        assert torch.equal(snapshot[name], tensor), name
