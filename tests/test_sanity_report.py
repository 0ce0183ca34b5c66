"""Verdicts of the user's SAE against matched random baselines, and the written report."""

import html
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from scipy import stats

import saesanity.studies.sanity_report as sanity_report
from saesanity.studies.sanity_report import (
    BEATS,
    INDISTINGUISHABLE,
    NOT_EVALUATED,
    VERDICT_RULE,
    WORSE,
    sanity_verdicts,
    summary_figure,
    write_sanity_report,
)

# Explained variance (higher is better) of three baselines with three seeds each:
# frozen_encoder/iso is the worst, frozen_decoder/cov the middle, soft_frozen_decoder/cov
# the best baseline.
BASELINES = {
    ("frozen_decoder", "cov"): [0.60, 0.62, 0.64],
    ("frozen_encoder", "iso"): [0.40, 0.43, 0.46],
    ("soft_frozen_decoder", "cov"): [0.80, 0.82, 0.84],
}


def _frame(user: dict, baselines: dict = BASELINES, metric: str = "explained_variance"):
    rows = [
        {"variant": variant, "init": init, "seed": seed, metric: value}
        for (variant, init), values in baselines.items()
        for seed, value in enumerate(values)
    ]
    rows.append({"variant": "user", "init": "", "seed": 0, **user})
    frame = pd.DataFrame(rows)
    frame["architecture"], frame["target_l0"] = "topk", 32
    return frame


def _verdict(sae: float, baselines: dict = BASELINES, metric: str = "explained_variance"):
    table = sanity_verdicts(_frame({metric: sae}, baselines, metric), [metric])
    assert len(table) == 1
    return table.iloc[0]


def test_clearly_better_sae_beats_the_baselines():
    row = _verdict(0.95)
    assert row["verdict"] == BEATS
    assert row["best_baseline"] == "soft_frozen_decoder/cov"
    assert row["diff_to_best"] == pytest.approx(0.95 - 0.82)
    assert 0 < row["ci_low"] < row["diff_to_best"] < row["ci_high"]
    assert row["soft_frozen_decoder/cov_seeds"] == 3
    assert row["frozen_encoder/iso_mean"] == pytest.approx(0.43)


def test_sae_equal_to_a_seed_of_the_best_baseline_is_indistinguishable():
    assert _verdict(0.84)["verdict"] == INDISTINGUISHABLE


def test_random_baseline_in_disguise_is_indistinguishable():
    row = _verdict(BASELINES[("frozen_decoder", "cov")][1])
    assert row["verdict"] == INDISTINGUISHABLE
    assert row["diff_to_best"] < 0 < row["diff_to_worst"]


def test_clearly_worse_sae_is_worse_than_the_baselines():
    row = _verdict(0.10)
    assert row["verdict"] == WORSE
    assert row["worst_baseline"] == "frozen_encoder/iso"
    assert row["worst_ci_high"] < 0


def test_lower_is_better_metric_beats_when_the_sae_has_the_lowest_loss():
    losses = {key: [4.0 - v for v in values] for key, values in BASELINES.items()}
    row = _verdict(2.9, losses, metric="ce_loss")
    assert row["direction"] == -1
    assert row["best_baseline"] == "soft_frozen_decoder/cov"  # lowest loss
    assert row["diff_to_best"] == pytest.approx((4.0 - 0.82) - 2.9)
    assert row["verdict"] == BEATS
    # The highest loss is not a win on a lower-is-better metric.
    assert _verdict(4.0, losses, metric="ce_loss")["verdict"] == WORSE


def test_interval_is_the_t_interval_of_the_best_baseline():
    seeds = np.array([0.70, 0.75, 0.83, 0.78])
    baselines = {("frozen_decoder", "iso"): list(seeds), ("frozen_encoder", "iso"): [0.1, 0.2]}
    sae = 0.9
    table = sanity_verdicts(
        _frame({"explained_variance": sae}, baselines), ["explained_variance"], confidence=0.9
    )
    row = table.iloc[0]
    d = sae - seeds.mean()
    half = stats.t(df=3).ppf(0.95) * seeds.std(ddof=1) / 2
    assert row["ci_low"] == pytest.approx(d - half)
    assert row["ci_high"] == pytest.approx(d + half)
    assert row["confidence"] == 0.9


def test_a_single_seed_has_no_interval():
    baselines = {("frozen_decoder", "cov"): [0.5], ("frozen_encoder", "iso"): [0.3]}
    row = _verdict(0.6, baselines)
    assert row["verdict"] == BEATS + " (no interval: 1 seed)"
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])
    assert _verdict(0.4, baselines)["verdict"] == INDISTINGUISHABLE + " (no interval: 1 seed)"


def test_a_tie_with_zero_spread_does_not_beat():
    baselines = {("frozen_decoder", "cov"): [0.5, 0.5, 0.5]}
    row = _verdict(0.5, baselines)
    assert row["ci_low"] == row["ci_high"] == 0
    assert row["verdict"] == INDISTINGUISHABLE


def test_metric_missing_for_the_user_is_not_evaluated():
    frame = _frame({"explained_variance": 0.95})
    frame["ce_loss"] = 3.0
    frame.loc[frame["variant"] == "user", "ce_loss"] = float("nan")
    table = sanity_verdicts(frame, ["explained_variance", "ce_loss", "kl_divergence"])
    assert list(table["metric"]) == ["explained_variance", "ce_loss"]  # kl: not in frame
    assert list(table["verdict"]) == [BEATS, NOT_EVALUATED]
    assert table.iloc[1]["frozen_decoder/cov_mean"] == 3.0


@pytest.mark.parametrize("users", [0, 2])
def test_needs_exactly_one_user_row(users):
    frame = _frame({"explained_variance": 0.9})
    frame = pd.concat([frame[frame["variant"] != "user"], *[frame.tail(1)] * users])
    with pytest.raises(ValueError, match=rf"variant == 'user'.*found {users}"):
        sanity_verdicts(frame, ["explained_variance"])


def test_unknown_metric_needs_a_direction():
    frame = _frame({"my_metric": 0.9}, metric="my_metric")
    with pytest.raises(ValueError, match="my_metric"):
        sanity_verdicts(frame, ["my_metric"])
    better = sanity_verdicts(frame, ["my_metric"], directions={"my_metric": 1})
    worse = sanity_verdicts(frame, ["my_metric"], directions={"my_metric": -1})
    assert (better.iloc[0]["verdict"], worse.iloc[0]["verdict"]) == (BEATS, WORSE)


def test_pooled_runs_of_several_architectures_are_refused():
    frame = _frame({"explained_variance": 0.9})
    other = frame[frame["variant"] != "user"].assign(architecture="relu")
    with pytest.raises(ValueError, match="architecture"):
        sanity_verdicts(pd.concat([frame, other]), ["explained_variance"])


def test_rule_is_stated_in_the_module_docstring():
    assert " ".join(VERDICT_RULE.split()) in " ".join(sanity_report.__doc__.split())


def test_summary_figure_has_one_panel_per_evaluated_metric(tmp_path):
    frame = _frame({"explained_variance": 0.10})
    frame["ce_loss"] = np.where(frame["variant"] == "user", np.nan, 3.0)
    table = sanity_verdicts(frame, ["explained_variance", "ce_loss"])
    fig = summary_figure(table, frame, tmp_path / "summary.pdf")
    titles = [ax.get_title() for ax in fig.axes if ax.axison]
    assert titles == [f"Explained variance (higher is better)\n{WORSE}"]
    panel = fig.axes[0]
    assert len(panel.patches) == 1 + len(BASELINES)  # the SAE's bar and one per baseline
    seeds = [c for c in panel.collections if isinstance(c, PathCollection)]  # scatter dots
    dots = np.concatenate([c.get_offsets()[:, 1] for c in seeds])
    assert sorted(dots) == pytest.approx(sorted(v for vs in BASELINES.values() for v in vs))
    assert (tmp_path / "summary.pdf").read_bytes().startswith(b"%PDF")


def test_report_without_any_metric(tmp_path):
    frame = _frame({"explained_variance": 0.9})
    table = sanity_verdicts(frame, ["ce_loss"])
    assert table.empty
    paths = [tmp_path / name for name in ("t.csv", "t.html", "t.pdf")]
    write_sanity_report(table, frame, *paths, title="empty", notes=[])
    assert all(path.stat().st_size > 0 for path in paths)


def test_write_sanity_report(tmp_path):
    frame = _frame({"explained_variance": 0.95})
    baseline = frame["variant"] != "user"
    frame["ce_loss"] = np.where(baseline, 3.0 + frame["seed"] * 0.01, 3.5)
    frame["kl_divergence"] = np.where(baseline, 0.1, np.nan)  # not evaluated for the SAE
    table = sanity_verdicts(frame, ["explained_variance", "ce_loss", "kl_divergence"])
    out = {suffix: tmp_path / "report" / f"sanity.{suffix}" for suffix in ("csv", "html", "pdf")}
    notes = ["baselines trained for 200 steps", "L0 matched within 10% <ok>"]
    write_sanity_report(table, frame, *out.values(), title="Sanity & checks", notes=notes)

    reread = pd.read_csv(out["csv"])
    assert list(reread["verdict"]) == [BEATS, WORSE, NOT_EVALUATED]
    assert list(reread.columns) == list(table.columns)
    page = out["html"].read_text(encoding="utf-8")
    for text in (BEATS, WORSE, NOT_EVALUATED, "Sanity &amp; checks", "10% &lt;ok&gt;"):
        assert text in page
    assert html.escape(VERDICT_RULE) in page
    assert '<img alt="summary figure" src="data:image/png;base64,' in page
    pdf = out["pdf"].read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000
    assert sorted(p.name for p in out["csv"].parent.iterdir()) == sorted(
        p.name for p in out.values()
    )
