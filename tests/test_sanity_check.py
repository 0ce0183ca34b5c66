"""`saesanity check PATH` end to end on the smoke config: an SAE made and saved by SAELens
itself, an SAE exported by this workflow that is a random baseline in disguise, and an
SAE trained far longer than its baselines; plus the named errors of bad SAE folders."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO
from safetensors.torch import load_file, save_file

from saesanity.studies.sanity import UserSAEError, read_saelens_sae

sae_lens = pytest.importorskip("sae_lens", reason="pip install -e '.[test]' installs SAE Lens")
from sae_lens.saes.sae import SAEMetadata  # noqa: E402

SMOKE = REPO / "config" / "smoke.yaml"
MODEL = yaml.safe_load((REPO / "config.yaml").read_text())["real"]["model"]
CONTEXT = yaml.safe_load(SMOKE.read_text())["real"]["model"]["context"]
HOOK = f"blocks.{MODEL['layer']}.hook_{MODEL['hook']}"
VERDICTS = {"beats the random baselines", "indistinguishable", "worse than the random baselines"}


def saesanity_check(workdir, sae_dir, *extra):
    """The documented command, run in a folder of its own."""
    fast = workdir / "fast.yaml"  # the verdict's reconstruction metrics only: fast
    fast.write_text(
        yaml.safe_dump(
            {"autointerp": {"enabled": False}, "ravel": {"enabled": False},
             "sparse_probing": {"enabled": False}}
        )
    )  # fmt: skip
    command = [sys.executable, "-m", "saesanity.cli", "check", str(sae_dir), "--cores", "2"]
    command += ["--configfile", str(SMOKE), str(fast), *extra]
    return subprocess.run(command, capture_output=True, text=True, cwd=workdir)


def saelens_topk(language_model, path):
    """A TopK SAE built and saved by SAELens's own classes: decoder rows are the embedded
    model's activations at the hook (a data-derived dictionary), encoder its transpose."""
    tokens = torch.randint(0, 49152, (4, CONTEXT))
    tokens[:, 0] = language_model.bos_token_id
    activations = language_model.residual(tokens)[:, 1:].reshape(-1, language_model.d_model)
    d_in, d_sae = language_model.d_model, 2 * language_model.d_model
    rows = activations[torch.randperm(len(activations))[:d_sae]]
    rows = torch.cat([rows, torch.randn(d_sae - len(rows), d_in)])
    rows = rows / rows.norm(dim=1, keepdim=True)
    cfg = sae_lens.TopKSAEConfig(
        d_in=d_in, d_sae=d_sae, k=8, dtype="float32", device="cpu",
        metadata=SAEMetadata(
            model_name=MODEL["name"], hook_name=HOOK, context_size=CONTEXT
        ),
    )  # fmt: skip
    sae = sae_lens.TopKSAE(cfg)
    with torch.no_grad():
        sae.W_dec.copy_(rows)
        sae.W_enc.copy_(rows.T)
        sae.b_enc.zero_()
        sae.b_dec.copy_(activations.mean(0))
    sae.save_model(path)
    return path


@pytest.fixture(scope="module")
def first_check(tmp_path_factory, embedded_model_dir, language_model):
    workdir = tmp_path_factory.mktemp("sanity")
    shutil.copytree(embedded_model_dir, workdir / "resources" / "model")
    sae_dir = saelens_topk(language_model, workdir / "my_sae")
    result = saesanity_check(workdir, sae_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir


def verdicts(workdir, name) -> pd.DataFrame:
    return pd.read_csv(workdir / "results" / "sanity" / name / "verdicts.csv").set_index("metric")


def test_an_sae_saved_by_saelens_gets_its_baselines_and_a_report(first_check):
    folder = first_check / "results" / "sanity" / "my_sae"
    measured = json.loads((folder / "l0.json").read_text())
    assert measured["l0"] == pytest.approx(8.0)  # TopK: exactly k on every token
    table = verdicts(first_check, "my_sae")
    assert {"explained_variance", "ce_loss_score", "kl_div_score"} <= set(table.index)
    assert set(table["verdict"]) <= VERDICTS
    for baseline in ("frozen_decoder/cov", "soft_frozen_decoder/iso", "frozen_encoder/iso"):
        assert (table[f"{baseline}_seeds"] == 3).all()
    html = (folder / "report.html").read_text()
    assert "data:image/png;base64," in html and "matched within 10%" in html
    assert (folder / "report.pdf").read_bytes().startswith(b"%PDF")
    # The SAE ran through the same evaluation as the baselines.
    user_eval = first_check / "results/real/runs/topk/user/none/l0_8/seed0/eval.json"
    ev = json.loads(user_eval.read_text())["metrics"]["explained_variance"]
    assert table.loc["explained_variance", "sae"] == pytest.approx(ev)


def test_a_random_baseline_in_disguise_is_indistinguishable(first_check):
    """The workflow's own soft-frozen-decoder checkpoint (seed 1), exported for SAELens,
    checked as if it were someone's SAE: it is one of its own baselines."""
    disguised = first_check / "results/real/runs/topk/soft_frozen_decoder/iso/l0_8/seed1/saelens"
    result = saesanity_check(first_check, disguised, "--name", "disguised")
    assert result.returncode == 0, result.stderr[-3000:]
    table = verdicts(first_check, "disguised")
    own = json.loads((disguised.parent / "eval.json").read_text())["metrics"]
    for metric in ("explained_variance", "ce_loss_score", "kl_div_score"):
        assert table.loc[metric, "verdict"] == "indistinguishable", table.loc[metric]
        # Round trip: exported, re-imported and re-evaluated, it scores what it scored.
        assert table.loc[metric, "sae"] == pytest.approx(own[metric], rel=1e-4, abs=1e-5)


def test_an_sae_trained_far_longer_beats_its_baselines(first_check, tmp_path):
    """Trained 20x the baselines' steps on the same store: its reconstruction is better
    than any random baseline's by more than their seed spread."""
    from saesanity.core.training import TrainConfig, train
    from saesanity.sources.activation_store import ActivationStore
    from saesanity.studies.real import export_saelens

    config = yaml.safe_load(SMOKE.read_text())["real"]["training"]
    store = ActivationStore(
        first_check / "results/real/activations/train", seed=0, outlier_factor=3
    )
    trained = train(
        TrainConfig(
            architecture="topk", d_sae=2 * store.d_in, k=8, batch_size=256,
            max_samples=20 * config["max_samples"], min_samples=0, warmup_steps=5,
            normalisation_batches=2, lr=2e-3, decay_fraction=0.2,
        ),
        store, tmp_path / "run", progress=False,
    )  # fmt: skip
    metadata = {"model_name": MODEL["name"], "hook_name": HOOK, "context_size": CONTEXT}
    export_saelens(trained, tmp_path / "long_trained", metadata)
    result = saesanity_check(first_check, tmp_path / "long_trained")
    assert result.returncode == 0, result.stderr[-3000:]
    table = verdicts(first_check, "long_trained")
    row = table.loc["explained_variance"]
    assert row["verdict"] == "beats the random baselines", row
    assert row["ci_low"] > 0


def test_relu_baselines_are_calibrated_to_the_saes_l0(first_check, language_model):
    """A standard (ReLU) SAE made by SAELens: ReLU has no target-L0 mechanism, so each
    baseline's L1 coefficient is calibrated to the SAE's held-out L0 first."""
    tokens = torch.randint(0, 49152, (4, CONTEXT))
    tokens[:, 0] = language_model.bos_token_id
    x = language_model.residual(tokens)[:, 1:].reshape(-1, language_model.d_model)
    d_in, d_sae = language_model.d_model, 2 * language_model.d_model
    rows = torch.nn.functional.normalize(torch.randn(d_sae, d_in), dim=1)
    pre = (x - x.mean(0)) @ rows.T
    cfg = sae_lens.StandardSAEConfig(
        d_in=d_in, d_sae=d_sae, dtype="float32", device="cpu",
        metadata=SAEMetadata(model_name=MODEL["name"], hook_name=HOOK, context_size=CONTEXT),
    )  # fmt: skip
    sae = sae_lens.StandardSAE(cfg)
    with torch.no_grad():
        sae.W_dec.copy_(rows)
        sae.W_enc.copy_(rows.T)
        sae.b_enc.fill_(-float(pre.quantile(0.98)))  # about 2% of the latents fire
        sae.b_dec.copy_(x.mean(0))
    sae.save_model(first_check / "relu_sae")
    result = saesanity_check(first_check, first_check / "relu_sae")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    folder = first_check / "results" / "sanity" / "relu_sae"
    calibration = json.loads((folder / "relu_l1.json").read_text())
    l0 = json.loads((folder / "l0.json").read_text())["l0"]
    assert set(calibration["calibration"]) == {
        "frozen_decoder/cov", "soft_frozen_decoder/iso", "frozen_encoder/iso"
    }  # fmt: skip
    for name, calibrated in calibration["calibration"].items():
        first_l0 = calibrated["trials"][0]["l0"]
        # The chosen coefficient is at least as close to the SAE's L0 as the start.
        assert abs(calibrated["held_out_l0"] - l0) <= abs(first_l0 - l0), name
    check = yaml.safe_load((folder / "check.yaml").read_text())
    assert set(check["real"]["by_l0"]["relu"]) == set(calibration["by_l0"])
    table = verdicts(first_check, "relu_sae")
    assert set(table["verdict"]) <= VERDICTS


# ------------------------------------------------------------------- bad SAE folders
@pytest.fixture
def good_sae(tmp_path, language_model):
    return saelens_topk(language_model, tmp_path / "sae")


def edit_cfg(path, **changes):
    cfg = json.loads((path / "cfg.json").read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
            cfg.get("metadata", {}).pop(key, None)
        elif key in cfg.get("metadata", {}):
            cfg["metadata"][key] = value
        else:
            cfg[key] = value
    (path / "cfg.json").write_text(json.dumps(cfg))


def test_a_folder_without_cfg_json_is_named(good_sae):
    (good_sae / "cfg.json").unlink()
    with pytest.raises(UserSAEError, match="cfg.json: missing"):
        read_saelens_sae(good_sae)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"architecture": "gated"}, "architecture = 'gated'"),
        ({"hook_name": "blocks.14.attn.hook_z"}, "hook_name = 'blocks.14.attn.hook_z'"),
        ({"hook_name": None}, "hook_name is missing"),
        ({"d_sae": 999}, r"W_enc has shape \(576, 1152\), expected \(576, 999\)"),
        ({"d_in": 512}, "expected"),
        ({"normalize_activations": "expected_average_only_in"}, "normalize_activations"),
        ({"k": 5000}, "k = 5000"),
    ],
)
def test_a_bad_cfg_is_named(good_sae, changes, message):
    edit_cfg(good_sae, **changes)
    with pytest.raises(UserSAEError, match=message):
        read_saelens_sae(good_sae)


def test_nan_weights_are_named(good_sae):
    tensors = load_file(str(good_sae / "sae_weights.safetensors"))
    tensors["W_dec"][0, 0] = float("nan")
    save_file(tensors, str(good_sae / "sae_weights.safetensors"))
    with pytest.raises(UserSAEError, match="W_dec has 1 non-finite"):
        read_saelens_sae(good_sae)


def test_an_sae_of_another_width_than_the_model_fails_before_training(tmp_path, embedded_model_dir):
    """d_in 512 for a 576-wide model: named at the first job that loads the model, and
    nothing is trained."""
    sae = sae_lens.TopKSAE(
        sae_lens.TopKSAEConfig(
            d_in=512, d_sae=1024, k=8, dtype="float32", device="cpu",
            metadata=SAEMetadata(
                model_name=MODEL["name"], hook_name=HOOK, context_size=CONTEXT
            ),
        )
    )  # fmt: skip
    sae.save_model(tmp_path / "narrow")
    shutil.copytree(embedded_model_dir, tmp_path / "resources" / "model")
    result = saesanity_check(tmp_path, tmp_path / "narrow")
    assert result.returncode != 0
    log = "".join(p.read_text() for p in (tmp_path / "logs").rglob("*.log"))
    assert "real.model.d_model = 512" in log and "width 576" in log
    assert not (tmp_path / "results" / "real" / "runs").exists()
