"""The training-length study: points, snapshot evaluation, tables and config resolution."""

import copy
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from saesanity.core.checkpoint import load_sae
from saesanity.plots.length import figure_length, figure_length_sensitivity, figure_length_sweep
from saesanity.sources.synthetic import SyntheticSource, make_ground_truth, save_ground_truth
from saesanity.studies.length import (
    check_length_config,
    evaluate_length_run,
    format_lr,
    length_targets,
    long_best,
    long_run_dir,
    long_runs,
    long_train_config,
    sensitivity_table,
    settled_table,
    sweep_best,
    sweep_run_dir,
    sweep_runs,
    sweep_summary,
    sweep_train_config,
)
from saesanity.studies.runs import (
    ConfigError,
    evaluation_points,
    synthetic_train_config,
    validate_config,
)
from saesanity.studies.synthetic import evaluate_synthetic_run, train_synthetic_run

REPO = Path(__file__).resolve().parents[1]
REGIME = {"law": "constant", "p": 0.0625}
BATCH = 128
EVAL = dict(regime_spec=REGIME, eval_samples=1024, eval_batch_size=512, eval_seed=7,
            recovery_threshold=0.8)  # fmt: skip


@pytest.fixture(scope="module")
def truth_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("truth") / "ground_truth.safetensors"
    save_ground_truth(make_ground_truth(16, 64, REGIME, {"mu": 0, "sigma": 0.25}, 0), path, {})
    return path


def train_config(**overrides) -> dict:
    values = dict(
        architecture="batchtopk", d_sae=64, k=4, batch_size=BATCH, max_samples=BATCH * 40,
        min_samples=0, warmup_steps=3, normalisation_batches=2, covariance_batches=2,
        dead_after_samples=BATCH * 5, threshold_start_step=2, log_every_steps=5,
        checkpoint_every_steps=7,
    )  # fmt: skip
    values.update(overrides)
    return values


def train_run(truth_path, out_dir, **overrides) -> Path:
    train_synthetic_run(truth_path, train_config(**overrides), out_dir)
    return Path(out_dir)


def evaluate(truth_path, run_dir, points_dir, **kwargs) -> pd.DataFrame:
    return evaluate_length_run(
        run_dir / "sae.safetensors", run_dir / "sae.json", truth_path, {"seed": 0},
        points_dir=points_dir, **EVAL, **kwargs,
    )  # fmt: skip


# ------------------------------------------------------------------ points


def test_points_double_and_are_batch_multiples():
    assert evaluation_points(512_000, 4_096_000, 4096) == [512_000, 1_024_000, 2_048_000]
    points = evaluation_points(512_000, 16_384_000, 8192)
    assert all(p % 8192 == 0 for p in points)
    assert points[0] == 507_904  # 512,000 is 62.5 steps of 8,192: rounded to 62
    assert len(points) == 5 and points[-1] == 8_192_000
    # The first point never rounds to zero steps.
    assert evaluation_points(100, 1000, 256) == [256, 512]


# ------------------------------------------------ evaluation of one run


def test_one_row_per_point_reached_then_the_final(truth_path, tmp_path):
    points = evaluation_points(BATCH * 5, BATCH * 40, BATCH)  # 5, 10, 20 steps
    run_dir = train_run(truth_path, tmp_path / "run", snapshot_samples=points)
    table = evaluate(truth_path, run_dir, tmp_path / "points")
    assert len(table) == len(points) + 1
    assert list(table["samples_seen"]) == [*points, BATCH * 40]
    assert list(table["final"]) == [False] * len(points) + [True]
    assert table["recovered_fraction"].between(0, 1).all()
    # Each point's recovery table is kept beside the row.
    assert len(list((tmp_path / "points").glob("*_recovery.csv"))) == len(points) + 1


def test_a_run_stopped_early_has_rows_only_up_to_its_stop(truth_path, tmp_path):
    # A plateau tolerance of 1 stops at the first window check after min_samples.
    points = [BATCH * 5, BATCH * 10, BATCH * 30]
    run_dir = train_run(
        truth_path, tmp_path / "run", snapshot_samples=points, plateau_rel_tol=1.0,
        min_samples=BATCH * 10, plateau_window_samples=BATCH * 5,
    )  # fmt: skip
    meta = json.loads((run_dir / "sae.json").read_text())
    assert meta["stop_reason"] == "plateau" and meta["samples_seen"] == BATCH * 10
    table = evaluate(truth_path, run_dir, tmp_path / "points")
    assert list(table["samples_seen"]) == [BATCH * 5, BATCH * 10]
    assert set(table["stop_reason"]) == {"plateau"}


def test_snapshot_at_the_last_step_scores_like_the_final_checkpoint(truth_path, tmp_path):
    run_dir = train_run(truth_path, tmp_path / "run", snapshot_samples=[BATCH * 40])
    final = evaluate_synthetic_run(
        run_dir / "sae.safetensors", run_dir / "sae.json", truth_path, {},
        out_json=tmp_path / "f.json", out_recovery_csv=tmp_path / "f.csv", **EVAL,
    )  # fmt: skip
    snap = run_dir / "snapshots" / f"samples{BATCH * 40}"
    snapshot = evaluate_synthetic_run(
        snap.with_suffix(".safetensors"), snap.with_suffix(".json"), truth_path, {},
        out_json=tmp_path / "s.json", out_recovery_csv=tmp_path / "s.csv", **EVAL,
    )  # fmt: skip
    assert snapshot["metrics"] == final["metrics"]
    assert snapshot["train_config"] == final["train_config"]
    assert (tmp_path / "s.csv").read_bytes() == (tmp_path / "f.csv").read_bytes()


def test_the_final_row_can_reuse_the_main_evaluation(truth_path, tmp_path):
    run_dir = train_run(truth_path, tmp_path / "run", snapshot_samples=[BATCH * 10])
    evaluate_synthetic_run(
        run_dir / "sae.safetensors", run_dir / "sae.json", truth_path, {"seed": 0},
        out_json=run_dir / "eval.json", out_recovery_csv=run_dir / "recovery.csv", **EVAL,
    )  # fmt: skip
    here = evaluate(truth_path, run_dir, tmp_path / "a")
    reused = evaluate(truth_path, run_dir, tmp_path / "b", final_eval_json=run_dir / "eval.json")
    pd.testing.assert_frame_equal(here, reused)
    assert not (tmp_path / "b" / f"samples{BATCH * 40}.json").exists()


def test_batchtopk_snapshot_carries_and_uses_the_threshold_of_its_step(truth_path, tmp_path):
    # Training does not depend on max_samples (no plateau stop, no decay): a snapshot at
    # step 15 of a 40-step run must equal the final state of a 15-step run, the
    # inference threshold included.
    long_dir = train_run(truth_path, tmp_path / "long", snapshot_samples=[BATCH * 15])
    short_dir = train_run(truth_path, tmp_path / "short", max_samples=BATCH * 15)
    snapshot = load_file(str(long_dir / "snapshots" / f"samples{BATCH * 15}.safetensors"))
    short = load_file(str(short_dir / "sae.safetensors"))
    assert snapshot.keys() == short.keys()
    for name in short:
        assert torch.equal(snapshot[name], short[name]), name
    final = load_file(str(long_dir / "sae.safetensors"))
    theta = snapshot["inference_threshold"]
    assert theta > 0 and not torch.equal(theta, final["inference_threshold"])
    # The evaluation's L0 is that of thresholding at theta, not of a batch top-k (= k).
    table = evaluate(truth_path, long_dir, tmp_path / "points")
    row = table[table["samples_seen"] == BATCH * 15].iloc[0]
    sae = load_sae(
        long_dir / "snapshots" / f"samples{BATCH * 15}.safetensors",
        long_dir / "snapshots" / f"samples{BATCH * 15}.json",
    )
    x = SyntheticSource(make_ground_truth(16, 64, REGIME, {"mu": 0, "sigma": 0.25}, 0), 7, "eval")
    x = torch.cat([x.batch(step, EVAL["eval_batch_size"]) for step in range(2)])
    with torch.no_grad():
        pre = (x * sae.input_scale - sae.b_dec) @ sae.W_enc.T + sae.b_enc
    expected_l0 = float((pre > theta.float()).sum(1).double().mean())
    assert row["l0"] == pytest.approx(expected_l0)
    assert row["l0"] != pytest.approx(4.0)


def test_snapshots_do_not_change_the_final_weights(truth_path, tmp_path):
    plain = train_run(truth_path, tmp_path / "plain")
    snapped = train_run(truth_path, tmp_path / "snapped", snapshot_samples=[BATCH * 5, BATCH * 20])
    a, b = load_file(str(plain / "sae.safetensors")), load_file(str(snapped / "sae.safetensors"))
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_a_snapshot_from_another_config_is_refused(truth_path, tmp_path):
    run_dir = train_run(truth_path, tmp_path / "run", snapshot_samples=[BATCH * 10])
    meta_path = run_dir / "snapshots" / f"samples{BATCH * 10}.json"
    meta = json.loads(meta_path.read_text())
    meta["train_config"]["lr"] *= 2
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="different training config"):
        evaluate(truth_path, run_dir, tmp_path / "points")


# ------------------------------------------------------------------ tables


def curve_frame(values: dict[int, tuple[float, float]], seed: int = 0, **identity) -> pd.DataFrame:
    rows = [
        {"regime": "constant", "architecture": "topk", "seed": seed, "samples_seen": s,
         "explained_variance": ev, "recovered_fraction": rec, **identity}
        for s, (ev, rec) in values.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_settled_point_is_where_every_later_doubling_is_within_tolerance():
    frame = curve_frame({1: (0.40, 0.0), 2: (0.50, 0.0), 4: (0.505, 0.0), 8: (0.508, 0.005)})
    row = settled_table(frame, 0.01).iloc[0]
    assert row["settled_samples"] == 2
    assert row["explained_variance_settled"] == pytest.approx(0.50)
    assert row["explained_variance_last"] == pytest.approx(0.508)
    # A big change in recovery at the last doubling: not settled.
    frame = curve_frame({1: (0.40, 0.0), 2: (0.41, 0.0), 4: (0.412, 0.05)})
    row = settled_table(frame, 0.01).iloc[0]
    assert math.isnan(row["settled_samples"])
    assert row["recovered_fraction_last_change"] == pytest.approx(0.05)
    # One point alone cannot show that anything stopped changing.
    assert math.isnan(settled_table(curve_frame({1: (0.4, 0.0)}), 0.01).iloc[0]["settled_samples"])


def test_a_small_but_growing_recovered_count_has_not_settled():
    # 0 -> 2 -> 12 -> 30 of 3,200 (TopK at lr 3e-3): every change is below 0.01.
    counts = {1: 0, 2: 2, 4: 12, 8: 30}
    frame = curve_frame({s: (0.64, c / 3200) for s, c in counts.items()})
    assert settled_table(frame, 0.01).iloc[0]["settled_samples"] == 1
    assert math.isnan(settled_table(frame, 0.01, 0.1).iloc[0]["settled_samples"])
    # No feature recovered anywhere: nothing moves, whatever the relative tolerance.
    frame = curve_frame({s: (0.64, 0.0) for s in counts})
    assert settled_table(frame, 0.01, 0.1).iloc[0]["settled_samples"] == 1
    # Within 10% of its value from 4 on: settled there.
    frame = curve_frame({1: (0.64, 0.0), 2: (0.64, 0.02), 4: (0.64, 0.03), 8: (0.64, 0.032)})
    assert settled_table(frame, 0.01, 0.1).iloc[0]["settled_samples"] == 4


def test_settled_point_uses_the_mean_over_seeds():
    frame = pd.concat(
        [
            curve_frame({1: (0.40, 0.0), 2: (0.50, 0.0), 4: (0.52, 0.0)}, seed=0),
            curve_frame({1: (0.40, 0.0), 2: (0.50, 0.0), 4: (0.50, 0.0)}, seed=1),
        ]
    )
    row = settled_table(frame, 0.02).iloc[0]
    assert row["seeds"] == 2 and row["settled_samples"] == 2  # mean change 0.01 < 0.02


def test_settled_changes_are_paired_by_seed():
    # Seeds that stop at different lengths: each is flat, but their levels differ, so
    # means over whichever seeds reach a point would jump (0.65 -> 0.70 -> 0.60).
    frame = pd.concat(
        [
            curve_frame({1: (0.60, 0.0), 2: (0.60, 0.0)}, seed=0),
            curve_frame({1: (0.70, 0.0), 3: (0.70, 0.0)}, seed=1),
        ]
    )
    row = settled_table(frame, 0.01).iloc[0]
    assert row["settled_samples"] == 1
    assert (row["seeds"], row["seeds_last"], row["last_samples"]) == (1, 1, 3)
    assert row["explained_variance_last"] == pytest.approx(0.70)
    # A real change in one seed is still seen.
    frame.loc[(frame["seed"] == 1) & (frame["samples_seen"] == 3), "explained_variance"] = 0.75
    assert math.isnan(settled_table(frame, 0.01).iloc[0]["settled_samples"])


def test_sensitivity_table_keeps_final_points_only():
    rows = []
    for lr in (1e-4, 2e-4):
        for seed in (0, 1):
            for samples, final in ((100, False), (200, True)):
                rows.append({
                    "regime": "constant", "architecture": "topk", "cfg_lr": lr,
                    "cfg_batch_size": 64, "seed": seed, "samples_seen": samples, "final": final,
                    "explained_variance": lr * 1000 + seed * 0.01, "l0": 4.0, "dead_fraction": 0.0,
                    "recovered_fraction": 0.0, "recovered_count": 0, "mean_max_cosine": 0.3,
                    "median_max_cosine": 0.3,
                })  # fmt: skip
    frame = pd.DataFrame(rows)
    table = sensitivity_table(frame, budget=200)
    assert len(table) == 2 and (table["seeds"] == 2).all()
    assert (table["samples_seen_mean"] == 200).all()
    assert table["explained_variance_mean"].tolist() == pytest.approx([0.105, 0.205])
    # A longer run stands in at a smaller budget through its snapshot there.
    assert (sensitivity_table(frame, budget=150)["samples_seen_mean"] == 100).all()


def test_figures_are_written(tmp_path):
    frame = pd.concat(
        [
            curve_frame({10: (0.4, 0.0), 20: (0.5, 0.01)}, seed=s, architecture=a)
            for s in (0, 1)
            for a in ("topk", "batchtopk")
        ]
    )
    frame["final"] = frame["samples_seen"] == 20
    frame["stop_reason"] = "plateau"
    frame["mean_max_cosine"] = 0.3
    figure_length(frame, tmp_path / "length.pdf", 0.8)
    assert (tmp_path / "length.pdf").read_bytes().startswith(b"%PDF")
    table = pd.DataFrame(
        {"regime": "constant", "architecture": "topk", "cfg_lr": [1e-4, 2e-4, 2e-4],
         "cfg_batch_size": [64, 64, 128], "explained_variance_mean": [0.5, 0.6, 0.55],
         "recovered_fraction_mean": 0.0}
    )  # fmt: skip
    figure_length_sensitivity(table, tmp_path / "sensitivity.pdf", 0.8)
    assert (tmp_path / "sensitivity.pdf").read_bytes().startswith(b"%PDF")


def test_settings_of_one_architecture_are_lines_of_their_own_not_a_mean(tmp_path, monkeypatch):
    import saesanity.plots.length as plots

    frames = []
    rates = {1e-2: 0.7, 3e-3: 0.5, 1e-3: 0.45, 3e-4: 0.4, 1e-4: 0.35}
    for lr, ev in rates.items():
        frame = curve_frame({10: (ev - 0.1, 0.0), 20: (ev, 0.0)}, seed=0, architecture="topk")
        frames.append(frame.assign(cfg_lr=lr, cfg_batch_size=64))
    frame = pd.concat(frames)
    frame["final"] = frame["samples_seen"] == 20
    frame["stop_reason"] = "budget"
    frame["mean_max_cosine"] = 0.3
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
    plots.figure_length(frame, tmp_path / "length.pdf", 0.8)
    ev_axis = figures[0].axes[2]  # rows: recovered, mean max cosine, EV
    lines = [line for line in ev_axis.get_lines() if len(line.get_xdata())]
    assert sorted(line.get_ydata()[-1] for line in lines) == pytest.approx(sorted(rates.values()))
    # Five learning rates, five dash patterns (not a cycle of four styles).
    assert len({str(line._unscaled_dash_pattern) for line in lines}) == 5
    labels = [text.get_text() for text in figures[0].legends[0].get_texts()]
    assert "topk, lr 0.01, batch 64" in labels and "topk, lr 0.003, batch 64" in labels


def test_two_auxk_forms_at_one_lr_and_batch_are_two_lines(tmp_path, monkeypatch):
    import saesanity.plots.length as plots

    frames = []
    for auxk, ev in (("post_relu", 0.7), ("pre_activation", 0.5)):
        frame = curve_frame({10: (ev - 0.1, 0.0), 20: (ev, 0.0)}, seed=0, architecture="topk")
        frames.append(frame.assign(cfg_lr=3e-3, cfg_batch_size=64, cfg_auxk_values=auxk))
    frame = pd.concat(frames).assign(stop_reason="budget", mean_max_cosine=0.3)
    frame["final"] = frame["samples_seen"] == 20
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
    plots.figure_length(frame, tmp_path / "length.pdf", 0.8)
    lines = [line for line in figures[0].axes[2].get_lines() if len(line.get_xdata())]
    assert sorted(line.get_ydata()[-1] for line in lines) == pytest.approx([0.5, 0.7])
    labels = [text.get_text() for text in figures[0].legends[0].get_texts()]
    assert labels == [
        "topk, lr 0.003, batch 64",
        "topk, lr 0.003, batch 64, AuxK on pre-activations",
    ]


# ------------------------------------------------------------ config resolution


def default_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_main_runs_gain_snapshots_only_when_selected():
    config = default_config()
    trained = synthetic_train_config(config, "constant", "topk", "trained", "iso", 0)
    assert trained["snapshot_samples"] == [512_000, 1_024_000, 2_048_000]
    baseline = synthetic_train_config(config, "constant", "batchtopk", "frozen_decoder", "cov", 0)
    assert "snapshot_samples" not in baseline  # baselines keep their fingerprint
    config["length_study"]["main"]["enabled"] = False
    assert "snapshot_samples" not in synthetic_train_config(
        config, "constant", "topk", "trained", "iso", 0
    )


def test_sensitivity_shares_its_default_point_with_the_long_run():
    config = default_config()
    study = config["length_study"]
    study["long"]["enabled"] = study["sensitivity"]["enabled"] = True
    runs = long_runs(config)
    sensitivity = long_runs(config, include_long=False)
    long = long_runs(config, include_sensitivity=False)
    # 3 lrs + 3 batch sizes share the default: 5 runs per (regime, architecture).
    assert len(sensitivity) == 5 * 2
    assert len(long) == 2 * 3
    assert len(runs) == len(long) + len(sensitivity) - 2  # topk, batchtopk at the default
    assert sum(run["budget"] == study["long"]["budget_samples"] for run in sensitivity) == 2
    budgets = {run["budget"] for run in sensitivity}
    assert budgets == {study["long"]["budget_samples"], study["sensitivity"]["budget_samples"]}
    resolved = long_train_config(config, **sensitivity[0])
    assert resolved["plateau_rel_tol"] == 0.0
    assert resolved["max_samples"] == sensitivity[0]["budget"]
    # Looked up from the wildcards alone, as the rule does.
    wildcards = {key: str(value) for key, value in sensitivity[0].items() if key != "budget"}
    assert long_train_config(config, **wildcards) == resolved
    assert float(sensitivity[0]["lr"]) == resolved["lr"]
    assert all(s % resolved["batch_size"] == 0 for s in resolved["snapshot_samples"])


def test_same_config_same_numbers(truth_path, tmp_path):
    tables = []
    for name in ("a", "b"):
        run_dir = train_run(truth_path, tmp_path / name, snapshot_samples=[BATCH * 10])
        tables.append(evaluate(truth_path, run_dir, tmp_path / f"{name}_points"))
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_main_config_is_not_mutated():
    config = default_config()
    before = copy.deepcopy(config)
    synthetic_train_config(config, "variable", "jumprelu", "trained", "iso", 1)
    long_runs(config)
    assert config == before


def long_best_config() -> dict:
    """config.yaml with config/synthetic_long_best.yaml layered on it."""
    from snakemake.utils import update_config

    config = default_config()
    update_config(config, yaml.safe_load((REPO / "config/synthetic_long_best.yaml").read_text()))
    return config


def test_long_settings_replace_the_default_lr_and_batch_per_architecture():
    config = long_best_config()
    validate_config(config, REPO / "schemas/config.schema.yaml")
    check_length_config(config)
    runs = long_runs(config)
    long = config["length_study"]["long"]
    settings = sum(len(long["settings"][a]) for a in long["architectures"])
    assert len(runs) == len(long["regimes"]) * settings
    topk = {(r["lr"], r["batch_size"], r["auxk_tag"]) for r in runs if r["architecture"] == "topk"}
    assert topk == {("0.01", 1024, ""), ("0.003", 1024, ""), ("0.003", 1024, "_auxk-pre")}
    run = next(r for r in runs if r["architecture"] == "jumprelu" and r["batch_size"] == 4096)
    assert long_run_dir(run).endswith("jumprelu/lr0.001_bs4096/seed0")
    resolved = long_train_config(config, **{k: str(v) for k, v in run.items() if k != "budget"})
    assert (resolved["lr"], resolved["batch_size"]) == (0.001, 4096)
    assert resolved["max_samples"] == long["budget_samples"]
    # An entry that names only the lr keeps the architecture's default batch size.
    default = synthetic_train_config(config, "constant", "topk", "trained", "iso", 0)
    long["settings"] = {"topk": [{"lr": 0.02}]}
    topk_runs = [r for r in long_runs(config) if r["architecture"] == "topk"]
    assert {(r["lr"], r["batch_size"]) for r in topk_runs} == {("0.02", default["batch_size"])}
    # Architectures without settings keep their default.
    batchtopk = synthetic_train_config(config, "constant", "batchtopk", "trained", "iso", 0)
    assert {(r["lr"], r["batch_size"]) for r in long_runs(config)
            if r["architecture"] == "batchtopk"} == {
        (format_lr(batchtopk["lr"]), batchtopk["batch_size"])
    }  # fmt: skip


def test_an_auxk_setting_is_its_own_run_and_the_default_paths_are_unchanged():
    from saesanity.studies.length import run_identity

    config = long_best_config()
    long = config["length_study"]["long"]
    setting = {"lr": 3e-3, "batch_size": 1024}
    long["settings"] = {"topk": [setting, {**setting, "auxk_values": "pre_activation"}]}
    long["regimes"], long["architectures"] = ["constant"], ["topk"]
    validate_config(config, REPO / "schemas/config.schema.yaml")
    check_length_config(config)
    runs = long_runs(config)
    dirs = sorted(long_run_dir(run) for run in runs)
    assert dirs == [
        "results/length/constant/runs/topk/lr0.003_bs1024/seed0",
        "results/length/constant/runs/topk/lr0.003_bs1024_auxk-pre/seed0",
    ]
    resolved = {
        run["auxk_tag"]: long_train_config(
            config, **{k: str(v) for k, v in run.items() if k != "budget"}
        )
        for run in runs
    }
    assert resolved["_auxk-pre"]["auxk_values"] == "pre_activation"
    # The default form adds nothing to the rule's params: existing runs are not redone.
    assert "auxk_values" not in resolved[""]
    assert {k: v for k, v in resolved["_auxk-pre"].items() if k != "auxk_values"} == resolved[""]
    wildcards = {"regime": "constant", "architecture": "topk", "lr": "0.003",
                 "batch_size": "1024", "auxk_tag": "_auxk-pre", "seed": "0"}  # fmt: skip
    assert run_identity(wildcards)["auxk"] == "pre_activation"
    # A form set for every long run tags every directory, so two forms never share one.
    long["settings"] = {"topk": [setting]}
    long["training"]["auxk_values"] = "pre_activation"
    (run,) = long_runs(config)
    assert long_run_dir(run).endswith("lr0.003_bs1024_auxk-pre/seed0")
    with pytest.raises(ValueError, match="directory tag '_auxk-pre'"):
        long_train_config(config, **{**run, "auxk_tag": ""})
    long["settings"]["topk"][0]["auxk_values"] = "pre-activation"
    with pytest.raises(Exception, match="pre-activation"):
        validate_config(config, REPO / "schemas/config.schema.yaml")
    # An architecture without AuxK cannot name a form (its directory would say it has one).
    long["settings"] = {"jumprelu": [{"lr": 1e-3, "auxk_values": "pre_activation"}]}
    with pytest.raises(ConfigError, match="jumprelu: auxk_values applies to the TopK family"):
        check_length_config(config)


def test_long_settings_of_an_architecture_not_run_are_unused_and_names_are_checked():
    config = long_best_config()
    config["length_study"]["long"]["architectures"] = ["topk"]  # as a layered file may
    check_length_config(config)
    assert {run["architecture"] for run in long_runs(config)} == {"topk"}
    config["length_study"]["long"]["settings"]["topK"] = [{"lr": 0.01}]
    with pytest.raises(Exception, match="topK"):
        validate_config(config, REPO / "schemas/config.schema.yaml")


# ------------------------------------------------------------ the lr x batch sweep


def sweep_config() -> dict:
    """config.yaml with config/synthetic_sweep.yaml layered on it, as --configfile does."""
    from snakemake.utils import update_config

    config = default_config()
    update_config(config, yaml.safe_load((REPO / "config/synthetic_sweep.yaml").read_text()))
    return config


def test_sweep_config_is_valid_and_runs_only_the_sweep():
    config = sweep_config()
    validate_config(config, REPO / "schemas/config.schema.yaml")
    check_length_config(config)
    targets = length_targets(config)
    assert targets and all("sweep" in target for target in targets)
    assert "figures/length_sweep_constant.pdf" in targets
    assert "figures/length_sweep_variable.pdf" in targets
    # The default config has the sweep off and stays valid.
    assert sweep_runs(default_config()) == []


def test_sweep_grid_expands_to_distinct_runs():
    config = sweep_config()
    runs = sweep_runs(config)
    sweep = config["length_study"]["sweep"]
    expected = (
        len(sweep["regimes"]) * len(sweep["architectures"]) * len(sweep["lrs"])
        * len(sweep["batch_sizes"]) * len(sweep["seeds"])
    )  # fmt: skip
    assert len(runs) == expected == 80
    assert len({sweep_run_dir(run) for run in runs}) == len(runs)
    assert {run["lr"] for run in runs} == {"0.0003", "0.001", "0.003", "0.01", "0.03"}
    assert len(sweep_runs(config, "constant")) == 40
    # Every directory string is matched by the rule's lr wildcard and reads back exactly.
    import re

    for run in runs:
        assert re.fullmatch(r"[0-9][0-9.e+-]*", run["lr"])
        assert format_lr(float(run["lr"])) == run["lr"]
        assert f"lr{run['lr']}_bs{run['batch_size']}" in sweep_run_dir(run)
    # A sweep run never shares a directory with a long run of the same lr and batch.
    run = runs[0]
    assert sweep_run_dir(run) != long_run_dir({**run, "auxk_tag": ""})


def test_sweep_lrs_and_factors_combine_without_duplicates():
    config = sweep_config()
    sweep = config["length_study"]["sweep"]
    sweep.update(lrs=[1e-3, 1e-2], lr_factors=[1.0, 2.0], batch_sizes=[4096, 4096])
    sweep.update(regimes=["constant"], architectures=["topk"])
    assert config["synthetic"]["training"]["lr"] == 1e-2  # TopK's default
    runs = sweep_runs(config)
    # 1e-2 absolute and x1.0 the default (1e-2) are one run; batch sizes once.
    assert [run["lr"] for run in runs] == ["0.001", "0.01", "0.02"]
    sweep["lrs"] = []
    assert [run["lr"] for run in sweep_runs(config)] == ["0.01", "0.02"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lrs", [1e-3, 0.0], "length_study.sweep.lrs: 0.0 is not a positive number"),
        ("lrs", [-1e-3], "length_study.sweep.lrs: -0.001 is not a positive number"),
        ("lrs", ["3e-4"], "write 3.0e-4"),
        ("lrs", [True], "length_study.sweep.lrs"),
        ("lrs", 1e-3, "length_study.sweep.lrs: expected a list"),
        ("lr_factors", [0], "length_study.sweep.lr_factors: 0 is not a positive number"),
        ("batch_sizes", [1024, 0], "length_study.sweep.batch_sizes: 0 is not a positive int"),
        ("batch_sizes", [512.5], "length_study.sweep.batch_sizes"),
        ("budget_samples", 0, "length_study.sweep.budget_samples"),
        ("regimes", ["nowhere"], "length_study.sweep.regimes: 'nowhere'"),
    ],
)
def test_bad_sweep_values_are_errors_naming_the_key(key, value, message):
    config = sweep_config()
    config["length_study"]["sweep"][key] = value
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        check_length_config(config)


def test_sweep_without_any_lr_is_an_error():
    config = sweep_config()
    config["length_study"]["sweep"].update(lrs=[], lr_factors=[])
    with pytest.raises(ConfigError, match="needs `lrs` or `lr_factors`"):
        check_length_config(config)


def test_schema_rejects_a_learning_rate_written_as_text():
    config = sweep_config()
    config["length_study"]["sweep"]["lrs"] = ["3e-4"]
    with pytest.raises(Exception, match="length_study.sweep.lrs"):
        validate_config(config, REPO / "schemas/config.schema.yaml")


def test_sweep_train_config_from_wildcards():
    config = sweep_config()
    run = sweep_runs(config, "constant")[0]
    wildcards = {key: str(value) for key, value in run.items()}
    resolved = sweep_train_config(config, **wildcards)
    assert resolved == sweep_train_config(config, **run)
    assert resolved["lr"] == float(run["lr"]) and resolved["batch_size"] == run["batch_size"]
    budget = config["length_study"]["sweep"]["budget_samples"]
    assert resolved["max_samples"] == budget and resolved["plateau_rel_tol"] == 0.0
    assert resolved["snapshot_samples"] == evaluation_points(128_000, budget, run["batch_size"])
    assert len(resolved["snapshot_samples"]) == 3  # 128k, 256k, 512k; 1,024k is the final
    # The rest is the main run's training values.
    main = synthetic_train_config(config, "constant", run["architecture"], "trained", "iso", 0)
    assert resolved["adam_betas"] == main["adam_betas"]
    # A run the sweep does not list is refused, not silently trained.
    with pytest.raises(ValueError, match="no run"):
        sweep_train_config(config, **{**wildcards, "lr": "0.5"})


def sweep_frame() -> pd.DataFrame:
    rows = []
    for lr, batch, ev, recovered, dead in (
        (1e-4, 64, (0.1, 0.2), (0, 0), (0.0, 0.0)),  # nothing moves
        (1e-3, 64, (0.3, 0.6), (0, 5), (0.0, 0.1)),
        (1e-3, 128, (0.3, 0.5), (0, 5), (0.0, 0.0)),  # tie on recovery, lower MCC
        (1e-2, 64, (0.4, 0.5), (2, 1), (0.3, 0.8)),  # latents die
    ):
        for i, samples in enumerate((100, 200)):
            rows.append({
                "regime": "constant", "architecture": "topk", "cfg_lr": lr,
                "cfg_batch_size": batch, "seed": 0, "samples_seen": samples,
                "recovered_count": recovered[i], "mcc": 0.1 * recovered[i] + ev[i] / 10,
                "mean_max_cosine": 0.3, "explained_variance": ev[i], "l0": 4.0,
                "dead_fraction": dead[i],
            })  # fmt: skip
    return pd.DataFrame(rows)


def test_sweep_summary_and_best():
    summary = sweep_summary(sweep_frame())
    assert len(summary) == 4
    slow = summary[summary["cfg_lr"] == 1e-4].iloc[0]
    assert (slow["explained_variance_first"], slow["explained_variance_last"]) == (0.1, 0.2)
    assert summary["dead_over_half"].tolist() == [False, False, False, True]
    best = sweep_best(summary).set_index("best_by")
    assert best.loc["recovered_count", "cfg_lr"] == 1e-3
    assert best.loc["recovered_count", "cfg_batch_size"] == 64  # tie broken by MCC
    assert best.loc["mcc", "cfg_batch_size"] == 64


def test_sweep_figure_is_written(tmp_path):
    figure_length_sweep(sweep_frame(), tmp_path / "sweep.pdf", 0.8)
    assert (tmp_path / "sweep.pdf").read_bytes().startswith(b"%PDF")


def test_a_run_without_latent_classification_skips_only_those_metrics(truth_path, tmp_path):
    run_dir = train_run(truth_path, tmp_path / "run", snapshot_samples=[BATCH * 10])
    full = evaluate(truth_path, run_dir, tmp_path / "full")
    fast = evaluate(truth_path, run_dir, tmp_path / "fast", latent_classification=False)
    pd.testing.assert_frame_equal(full, fast)  # the point rows carry no latent_* metric
    point = json.loads((tmp_path / "fast" / f"samples{BATCH * 10}.json").read_text())
    assert "mcc" in point["metrics"] and "latent_f1" not in point["metrics"]
    assert (
        "latent_f1"
        in json.loads((tmp_path / "full" / f"samples{BATCH * 10}.json").read_text())["metrics"]
    )


def long_frame(curves: dict[tuple[float, int], dict[int, int]], seed: int = 0) -> pd.DataFrame:
    """Point rows of long runs: {(lr, batch size): {samples: recovered count}}."""
    rows = [
        {"regime": "constant", "architecture": "topk", "cfg_lr": lr, "cfg_batch_size": batch,
         "cfg_auxk_values": "post_relu", "seed": seed, "samples_seen": samples,
         "recovered_count": count, "recovered_fraction": count / 3200, "mcc": count / 3200,
         "explained_variance": 0.7, "dead_fraction": 0.0}
        for (lr, batch), points in curves.items()
        for samples, count in points.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


def best_of(frame: pd.DataFrame) -> pd.Series:
    return long_best(frame, settled_table(frame, 0.01, 0.1)).iloc[0]


def test_long_best_is_bracketed_only_when_both_neighbouring_rates_recover_fewer():
    flat = {1: 100, 2: 1000, 4: 1010}
    middle = long_frame({(1e-4, 1024): {1: 0, 2: 10, 4: 20}, (1e-3, 1024): flat,
                         (1e-2, 1024): {1: 50, 2: 60, 4: 60}})  # fmt: skip
    best = best_of(middle)
    assert (best["cfg_lr"], best["recovered_count"], best["runner_up_lr"]) == (1e-3, 1010, 1e-2)
    assert best["bracketed"] and best["settled_samples"] == 2
    assert best["status"] == "settled optimum"
    # The best rate is the lowest one run: the optimum may lie below it.
    edge = long_frame({(1e-3, 1024): flat, (1e-2, 1024): {1: 50, 2: 60, 4: 60}})
    assert not best_of(edge)["bracketed"]
    assert best_of(edge)["status"] == "best rate at the edge of the rates run"
    # A neighbour at another batch size does not bracket the rate.
    other_batch = long_frame({(1e-4, 4096): {1: 0, 2: 10, 4: 20}, (1e-3, 1024): flat,
                              (1e-2, 1024): {1: 50, 2: 60, 4: 60}})  # fmt: skip
    assert not best_of(other_batch)["bracketed"]


def test_long_best_compares_settings_at_their_common_length_and_says_when_not_settled():
    # The 1e-3 run is longer and still rising; at 4 (where both end) 3e-3 leads.
    frame = long_frame({(3e-3, 1024): {1: 100, 2: 300, 4: 500},
                        (1e-3, 1024): {1: 0, 2: 100, 4: 400, 8: 2000}})  # fmt: skip
    best = best_of(frame)
    assert (best["cfg_lr"], best["compared_samples"], best["recovered_count"]) == (3e-3, 4, 500)
    assert best["status"] == "best rate at the edge of the rates run; not settled"
    # Nothing recovered anywhere is said, not ranked.
    nothing = long_frame({(1e-4, 1024): {1: 0, 2: 0}, (1e-3, 1024): {1: 0, 2: 0},
                          (1e-2, 1024): {1: 0, 2: 0}})  # fmt: skip
    assert best_of(nothing)["status"].startswith("nothing recovered at any setting")


def test_long_best_reports_the_range_over_seeds():
    frame = pd.concat(
        [
            long_frame({(1e-3, 1024): {1: 100, 2: 1000}}, seed=0),
            long_frame({(1e-3, 1024): {1: 100, 2: 1200}}, seed=1),
        ]
    )
    best = best_of(frame)
    assert best["seeds"] == 2
    assert (best["recovered_count"], best["recovered_count_min"]) == (1100, 1000)
    assert best["recovered_count_max"] == 1200
