"""The training-length study on real activations: points, run configs, snapshots,
gap table, settle rule and figure (the evaluation itself runs in the smoke workflow)."""

import copy
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file
from snakemake.utils import update_config

from saesanity.plots.real_length import figure_real_length, settle_note, training_length_note
from saesanity.sources.synthetic import make_ground_truth, save_ground_truth
from saesanity.studies.real_length import (
    check_length_config,
    gap_table,
    length_runs,
    length_train_config,
    sample_points,
    settled_from,
    step_points,
)
from saesanity.studies.runs import ConfigError, real_train_config, validate_config
from saesanity.studies.synthetic import train_synthetic_run

REPO = Path(__file__).resolve().parents[1]


def study_config() -> dict:
    """config.yaml with config/real_length.yaml layered on it, as --configfile does."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / "config/real_length.yaml").read_text()))
    return config


def test_points_double_from_the_first_and_end_at_the_last():
    assert step_points(200, 6400) == [200, 400, 800, 1600, 3200, 6400]
    assert step_points(200, 1000) == [200, 400, 800, 1000]
    assert step_points(5, 5) == [5]
    with pytest.raises(ConfigError, match="first_steps 300 and max_steps 200"):
        step_points(300, 200)


def test_study_config_is_valid_and_spans_32x_at_the_table_l0():
    config = study_config()
    validate_config(config, REPO / "schemas/config.schema.yaml")
    check_length_config(config)
    runs = length_runs(config)
    # 2 architectures x 4 (variant, init), one seed, all at table_l0.
    assert len(runs) == 8
    assert {run["target_l0"] for run in runs} == {config["real"]["table_l0"]}
    points = sample_points(config)
    assert points[-1] // points[0] == 32 and points[0] == 200 * 1024


def test_the_default_config_runs_no_length_study():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert length_runs(config) == []


def test_run_config_has_no_decay_snapshots_at_every_point_and_the_grid_settings():
    config = study_config()
    run = next(r for r in length_runs(config) if r["architecture"] == "jumprelu")
    values = length_train_config(config, **run)
    assert values["decay_fraction"] == 0.0 and values["plateau_rel_tol"] == 0.0
    assert values["snapshot_samples"] == sample_points(config)
    assert values["max_samples"] == 6400 * 1024 and values["batch_size"] == 1024
    # The grid's per-architecture settings still apply (JumpReLU's Adam betas).
    assert values["adam_betas"] == config["real"]["architectures"]["jumprelu"]["adam_betas"]


def test_a_default_grid_run_is_the_study_run_stopped_at_one_of_its_points():
    """config.yaml trains its real runs to a length the study measured, with the
    study's batch, lr and schedule: each is the study's snapshot at that point, so the
    study's findings at that length are about these very runs."""
    default = yaml.safe_load((REPO / "config.yaml").read_text())
    study = study_config()
    budget_keys = {"snapshot_samples", "max_samples", "min_samples", "plateau_rel_tol"}
    for run in length_runs(study):
        grid = real_train_config(
            default, run["architecture"], run["variant"], run["init"], run["target_l0"], 0
        )
        snapshots = length_train_config(study, **run)
        assert grid["max_samples"] in snapshots["snapshot_samples"]
        assert grid["plateau_rel_tol"] == 0.0
        differing = {
            key for key in grid.keys() | snapshots.keys() if grid.get(key) != snapshots.get(key)
        }
        assert differing <= budget_keys, differing


def test_a_decay_is_refused_naming_the_key():
    config = study_config()
    config["real"]["length_study"]["training"]["decay_fraction"] = 0.2
    with pytest.raises(ConfigError, match="length_study.training.decay_fraction"):
        check_length_config(config)


def test_a_study_without_the_trained_sae_is_refused():
    config = study_config()
    config["real"]["length_study"]["variants"] = {"frozen_decoder": ["cov"]}
    with pytest.raises(ConfigError, match="needs `trained`"):
        check_length_config(config)


@pytest.mark.parametrize("architecture", ["batchtopk", "jumprelu"])
def test_snapshot_at_step_n_is_the_state_of_an_n_step_run(architecture, tmp_path):
    """Why the study may read every length off one run: without a final decay, the
    snapshot at step N equals a run that stops at N (and with the decay it would not)."""
    truth = tmp_path / "truth.safetensors"
    regime = {"law": "constant", "p": 0.0625}
    save_ground_truth(make_ground_truth(16, 64, regime, {"mu": 0, "sigma": 0.25}, 0), truth, {})
    base = dict(
        architecture=architecture, d_sae=64, k=4, batch_size=64, min_samples=0,
        warmup_steps=3, normalisation_batches=2, covariance_batches=2, dead_after_samples=320,
        threshold_start_step=2, sparsity_warmup_steps=4, log_every_steps=5,
        checkpoint_every_steps=7, decay_fraction=0.0, plateau_rel_tol=0.0,
    )  # fmt: skip
    train_synthetic_run(truth, {**base, "max_samples": 64 * 24, "snapshot_samples": [64 * 12]},
                        tmp_path / "long")  # fmt: skip
    train_synthetic_run(truth, {**base, "max_samples": 64 * 12}, tmp_path / "short")
    snapshot = load_file(str(tmp_path / "long/snapshots/samples768.safetensors"))
    short = load_file(str(tmp_path / "short/sae.safetensors"))
    for name, value in short.items():
        assert torch.equal(snapshot[name], value), name
    decayed = {**base, "max_samples": 64 * 24, "decay_fraction": 0.6, "snapshot_samples": [768]}
    train_synthetic_run(truth, decayed, tmp_path / "decayed")
    other = load_file(str(tmp_path / "decayed/snapshots/samples768.safetensors"))
    assert not torch.equal(other["W_enc"], short["W_enc"])


# ------------------------------------------------------------------- tables
def points_frame(trained_ev, baseline_evs) -> pd.DataFrame:
    """A hand-made points table: one architecture, seed 0, steps 100, 200, 400, ..."""
    rows = []
    for index, value in enumerate(trained_ev):
        steps = 100 * 2**index
        rows.append(dict(architecture="batchtopk", variant="trained", init="iso", seed=0,
                         steps=steps, explained_variance=value, ce_loss_score=value,
                         sae_top_1_test_accuracy=0.7))  # fmt: skip
        for (variant, init), values in baseline_evs.items():
            value = values[index]
            rows.append(dict(architecture="batchtopk", variant=variant, init=init, seed=0,
                             steps=steps, explained_variance=value, ce_loss_score=value,
                             sae_top_1_test_accuracy=0.72))  # fmt: skip
    return pd.DataFrame(rows)


def test_gap_is_trained_minus_the_best_baseline_at_each_length():
    points = points_frame(
        [0.60, 0.70, 0.75],
        {
            ("frozen_decoder", "cov"): [0.50, 0.52, 0.53],
            ("soft_frozen_decoder", "iso"): [0.62, 0.60, 0.61],
        },
    )
    gaps = gap_table(points, tolerance=0.01)
    ev = gaps[gaps["metric"] == "explained_variance"].set_index("steps")
    assert ev["gap"].to_dict() == pytest.approx({100: -0.02, 200: 0.10, 400: 0.14})
    assert ev.loc[100, "best_baseline_name"] == "soft_frozen_decoder/iso"
    assert ev.loc[400, "best_baseline"] == pytest.approx(0.61)
    # Still moving by 0.04 at the last doubling: not settled.
    assert ev["gap_settled_from_steps"].isna().all()
    probe = gaps[gaps["metric"] == "sae_top_1_test_accuracy"]
    assert probe["gap"].to_numpy() == pytest.approx([-0.02] * 3)
    assert (probe["gap_settled_from_steps"] == 100).all()


def test_settled_point_is_where_every_later_doubling_moves_less_than_tolerance():
    curve = pd.Series([0.1, 0.3, 0.305, 0.309, 0.31], index=[1, 2, 4, 8, 16])
    assert settled_from(curve, 0.01) == 2
    assert settled_from(pd.Series([0.1, 0.1, 0.2], index=[1, 2, 4]), 0.01) is None
    assert settled_from(pd.Series([0.1], index=[1]), 0.01) is None


def test_figure_is_written_and_says_what_has_not_settled(tmp_path):
    points = points_frame([0.60, 0.70, 0.75], {("frozen_decoder", "cov"): [0.50, 0.52, 0.53]})
    for extra, value in [("l0", 40.0), ("train_explained_variance", 0.8),
                         ("decoder_median_cosine_to_init", 0.9),
                         ("decoder_fraction_outside_cap", 0.1)]:  # fmt: skip
        points[extra] = value
    jumprelu = copy.deepcopy(points).assign(architecture="jumprelu")
    points = pd.concat([points, jumprelu], ignore_index=True)
    gaps = gap_table(points, tolerance=0.01)
    note = settle_note(gaps)
    assert "NOT settled" in note and "batchtopk EV" in note and "1 seed(s); no interval" in note
    assert "batchtopk Probe top-1 (from 100 steps)" in note
    out = tmp_path / "real_length.pdf"
    figure_real_length(points, gaps, out)
    assert out.read_bytes().startswith(b"%PDF")


def test_table_note_states_the_training_length_and_what_the_study_found():
    table_runs = pd.DataFrame({"steps": [200, 200], "samples_seen": [819200, 819200],
                               "seed": [0, 0]})  # fmt: skip
    unchecked = training_length_note(table_runs, None)
    assert "200 steps (0.82M samples); 1 seed, no interval." in unchecked
    assert "not checked" in unchecked and "config/real_length.yaml" in unchecked
    # With the study off, the note says whether the table's length is one it measures:
    # 200 steps of 4,096 is not a point of a study at batch 1,024, 3,200 steps of 1,024 is.
    steps = step_points(200, 6400)
    assert "measures other lengths" in training_length_note(
        table_runs, None, 1024, study_steps=steps
    )
    at_a_point = pd.DataFrame({"steps": [3200], "samples_seen": [3200 * 1024], "seed": [0]})
    measured = training_length_note(at_a_point, None, 1024, study_steps=steps)
    assert "measures whether the gap" in measured and "does not re-check" in measured
    assert "probe gaps and the decoders' drift are not part of that rule" in measured
    assert "L0" not in training_length_note(at_a_point, None, 1024, study_steps=steps)
    # The L0 sweep's other L0s are named: the study measures one L0.
    sweep = pd.DataFrame({"steps": [3200] * 3, "samples_seen": [3200 * 1024] * 3,
                          "seed": [0] * 3, "target_l0": [20, 40, 80]})  # fmt: skip
    swept = training_length_note(sweep, None, 1024, study_steps=steps, study_l0=40)
    assert "runs at L0 40 only; at L0 20, 80 the same length is assumed" in swept
    points = points_frame(
        [0.60, 0.70, 0.75],
        {("soft_frozen_decoder", "iso"): [0.62, 0.60, 0.61]},
    )
    note = training_length_note(table_runs, gap_table(points, tolerance=0.01), 1024)
    assert "batch 1,024" in note
    # EV and CE score in detail; the other metrics (the probes) by whether their gap
    # settled; drift is said to be outside the rule.
    assert "batchtopk EV gap -0.020 at 100 steps, +0.140 at 400 (not settled by 400 steps)" in note
    assert "batchtopk CE score gap" in note and "Probe top-1 gap" not in note
    settled = "Other metrics: Gap settled (later doublings move it < 0.01): batchtopk Probe top-1"
    assert settled in note
    assert "drift from their initialisation is not part of the rule" in note
