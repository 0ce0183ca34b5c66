"""The training-length study: does feature recovery depend on how long the SAE trains?

Recovery and explained variance are measured at log-spaced points of training
(every doubling of samples seen) from the snapshots of one run, with the same
evaluation code as the final checkpoint (`synthetic_study.evaluate_synthetic_run`).
Two sources of runs:

* `main`: the main synthetic runs (results/synthetic/...). They only gain
  `snapshot_samples`, which changes nothing in training: the final weights are
  bit-identical (tested), so the study costs evaluations, not training.
* `long`: dedicated runs under results/length/ trained to a longer budget, plus
  a one-factor-at-a-time sensitivity to the learning rate and the batch size.
* `sweep`: a coarse full grid of absolute learning rates x batch sizes at a short
  budget (results/length/<regime>/sweep/), evaluated at every doubling: it finds the
  edges of the learning rate (nothing moves / latents die) and candidate settings
  for long runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from saesanity.core.architectures import REGISTRY
from saesanity.core.architectures.topk import TopKFamilySAE
from saesanity.core.training import TrainConfig
from saesanity.studies.runs import (
    ConfigError,
    evaluation_points,
    run_dir,
    synthetic_runs,
    synthetic_train_config,
)
from saesanity.studies.synthetic import evaluate_synthetic_run

# A long run's setting may also name AuxK's value form (long.settings); it ends the
# setting's directory name, empty for the default so that those paths stay as they were.
AUXK_TAGS = {"post_relu": "", "pre_activation": "_auxk-pre"}
AUXK_NAMES = {tag: name for name, tag in AUXK_TAGS.items()}
AUXK_TAG_PATTERN = "|".join(sorted(AUXK_TAGS.values()))  # a wildcard constraint
LONG_RUN_KEYS = ("regime", "architecture", "lr", "batch_size", "auxk_tag", "seed")
LONG_RUN_DIR = (
    "results/length/{regime}/runs/{architecture}/lr{lr}_bs{batch_size}{auxk_tag}/seed{seed}"
)
SWEEP_RUN_KEYS = ("regime", "architecture", "lr", "batch_size", "seed")
# The sweep's runs live apart from the long runs: same lr and batch, other budget and points.
SWEEP_RUN_DIR = "results/length/{regime}/sweep/{architecture}/lr{lr}_bs{batch_size}/seed{seed}"
# What a row reports, per evaluation point.
POINT_METRICS = [
    "explained_variance",
    "l0",
    "dead_fraction",
    "recovered_fraction",
    "recovered_count",
    "mean_max_cosine",
    "median_max_cosine",
    "mcc",
]
# The two quantities whose stability defines "trained long enough".
SETTLE_METRICS = ("explained_variance", "recovered_fraction")
# "Best setting": most features recovered, ties broken by MCC, then EV.
BEST_ORDER = ["recovered_count", "mcc", "explained_variance"]


def format_lr(lr: float) -> str:
    """Learning rate as it appears in a run directory (round-trips through float)."""
    return f"{lr:g}"


def _length_config(config: dict) -> dict:
    return config.get("length_study", {})


def long_runs(
    config: dict, include_long: bool = True, include_sensitivity: bool = True
) -> list[dict]:
    """Dedicated runs: the long-budget grid and the sensitivity grid (one factor at a
    time around each architecture's default lr and batch size), deduplicated. Each run
    carries its `budget`. The sensitivity's default point is the long-budget run itself
    when that run exists (its snapshot at the sensitivity budget is the same state as a
    run stopped there: training does not depend on max_samples, tested)."""
    study = _length_config(config)
    long = study.get("long", {})
    sensitivity = study.get("sensitivity", {})
    runs: dict[tuple, dict] = {}

    def add(regime, architecture, lr, batch_size, seed, budget, include, auxk_tag="") -> None:
        run = {
            "regime": regime,
            "architecture": architecture,
            "lr": format_lr(lr),
            "batch_size": int(batch_size),
            "auxk_tag": auxk_tag,
            "seed": int(seed),
        }
        key = tuple(str(run[k]) for k in LONG_RUN_KEYS)
        if key in runs:
            return
        runs[key] = {**run, "budget": int(budget), "include": include}

    def base(regime, architecture, seed) -> dict:
        return synthetic_train_config(config, regime, architecture, "trained", "iso", seed)

    if long.get("enabled", False):
        for regime in long["regimes"]:
            for architecture in long["architectures"]:
                for seed in long["seeds"]:
                    values = base(regime, architecture, seed)
                    default = {"lr": values["lr"], "batch_size": values["batch_size"]}
                    for setting in long_settings(config, architecture, default):
                        add(regime, architecture, setting["lr"], setting["batch_size"], seed,
                            long["budget_samples"], include_long,
                            auxk_tag(long, values, setting))  # fmt: skip
    if sensitivity.get("enabled", False):
        budget = sensitivity_budget(config)
        for regime in sensitivity["regimes"]:
            for architecture in sensitivity["architectures"]:
                for seed in sensitivity["seeds"]:
                    values = base(regime, architecture, seed)
                    grid = [
                        (values["lr"] * f, values["batch_size"]) for f in sensitivity["lr_factors"]
                    ]
                    grid += [(values["lr"], b) for b in sensitivity["batch_sizes"]]
                    tag = auxk_tag(long, values)
                    for lr, batch_size in grid:
                        key = (regime, architecture, format_lr(lr), str(int(batch_size)), tag,
                               str(seed))  # fmt: skip
                        if key in runs:  # the long run: also a sensitivity point
                            runs[key]["include"] = runs[key]["include"] or include_sensitivity
                        add(regime, architecture, lr, batch_size, seed, budget,
                            include_sensitivity, tag)  # fmt: skip
    return [
        {k: v for k, v in runs[key].items() if k != "include"}
        for key in sorted(runs)
        if runs[key]["include"]
    ]


def auxk_tag(long: dict, values: dict, setting: dict | None = None) -> str:
    """The directory tag of a dedicated run's AuxK value form: the setting's, else the
    long runs' `training`, else the main run's (`values`)."""
    name = (setting or {}).get("auxk_values") or long.get("training", {}).get(
        "auxk_values", values.get("auxk_values", "post_relu")
    )
    return AUXK_TAGS[name]


def long_settings(config: dict, architecture: str, default: dict) -> list[dict]:
    """The (lr, batch size[, AuxK values]) settings of one architecture's long runs:
    those listed under `long.settings.<architecture>` (e.g. a sweep's best and a
    neighbour), each key missing from an entry taken from the architecture's default;
    else the default.
    Settings of an architecture not in `long.architectures` are unused (a layered
    config file may narrow the list); the schema rejects unknown architecture names."""
    listed = _length_config(config).get("long", {}).get("settings", {}).get(architecture)
    if not listed:
        return [default]
    return [{**default, **setting} for setting in listed]


def sensitivity_budget(config: dict) -> int:
    """Samples the sensitivity runs train for (default: the long runs' budget)."""
    study = _length_config(config)
    return int(study["sensitivity"].get("budget_samples", study["long"]["budget_samples"]))


def long_run_dir(run: dict) -> str:
    return LONG_RUN_DIR.format(**run)


def long_train_config(
    config: dict,
    regime: str,
    architecture: str,
    lr: str | float,
    batch_size: int | str,
    seed: int | str,
    budget: int | None = None,
    auxk_tag: str = "",
) -> dict:
    """TrainConfig kwargs of a dedicated run: the main run's values, then the length
    study's overrides (no plateau stop by default), the setting's AuxK value form (named
    by `auxk_tag`), the budget, lr and batch size."""
    study = _length_config(config)
    if budget is None:
        wanted = tuple(str(v) for v in (regime, architecture, lr, batch_size, auxk_tag, seed))
        budgets = [
            run["budget"]
            for run in long_runs(config)
            if tuple(str(run[key]) for key in LONG_RUN_KEYS) == wanted
        ]
        if not budgets:
            named = dict(zip(LONG_RUN_KEYS, wanted, strict=True))
            raise ValueError(f"length_study: no dedicated run {named}")
        budget = budgets[0]
    overrides = dict(study["long"].get("training", {}))
    if auxk_tag:
        if auxk_tag not in AUXK_NAMES:
            raise ValueError(f"length_study: unknown AuxK tag {auxk_tag!r} ({sorted(AUXK_NAMES)})")
        overrides["auxk_values"] = AUXK_NAMES[auxk_tag]
    values = _dedicated_train_config(
        config, overrides, study["first_samples"],
        regime, architecture, lr, batch_size, seed, budget,
    )  # fmt: skip
    # The directory must name the form the run trains with, or two forms share one path.
    if AUXK_TAGS[values.get("auxk_values", "post_relu")] != auxk_tag:
        raise ValueError(
            f"length_study: a run with auxk_values {values['auxk_values']!r} needs the "
            f"directory tag {AUXK_TAGS[values['auxk_values']]!r}, not {auxk_tag!r}"
        )
    return values


def _dedicated_train_config(
    config: dict,
    overrides: dict,
    first_samples: int,
    regime: str,
    architecture: str,
    lr: str | float,
    batch_size: int | str,
    seed: int | str,
    budget: int,
) -> dict:
    """The main run's values, then `overrides`, the budget, lr, batch size and the
    snapshot points (every doubling from `first_samples`); checked by TrainConfig."""
    values = synthetic_train_config(config, regime, architecture, "trained", "iso", seed)
    values.update(overrides)
    values.update(max_samples=int(budget), lr=float(lr), batch_size=int(batch_size))
    values["snapshot_samples"] = evaluation_points(
        first_samples, values["max_samples"], values["batch_size"]
    )
    TrainConfig(**values)
    return values


# ------------------------------------------------------------------ the sweep


def _sweep_config(config: dict) -> dict:
    return _length_config(config).get("sweep", {})


def _positive_numbers(values, key: str, kind: type = float) -> list:
    """The list under `key`, each value a positive number (an int for kind=int)."""
    if not isinstance(values, list):
        raise ConfigError(f"{key}: expected a list, got {values!r}")
    for value in values:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is int:
            ok = ok and float(value).is_integer()
        if not ok or not math.isfinite(value) or value <= 0:
            hint = ""
            if isinstance(value, str):
                hint = " (YAML reads 3e-4 as text: write 3.0e-4)"
            what = "a positive integer" if kind is int else "a positive number"
            raise ConfigError(f"{key}: {value!r} is not {what}{hint}")
    return [kind(value) for value in values]


def sweep_learning_rates(config: dict, regime: str, architecture: str, seed: int) -> list[str]:
    """The sweep's learning rates of one architecture, as run-directory strings: the
    absolute `lrs`, then `lr_factors` x the architecture's default lr; sorted by value,
    duplicates (same directory string) once. Raise ConfigError naming the key when a
    value is not a positive number or two distinct values share a directory."""
    sweep = _sweep_config(config)
    lrs = _positive_numbers(sweep.get("lrs", []), "length_study.sweep.lrs")
    factors = _positive_numbers(sweep.get("lr_factors", []), "length_study.sweep.lr_factors")
    if not lrs and not factors:
        raise ConfigError("length_study.sweep: needs `lrs` or `lr_factors` (a non-empty list)")
    default = synthetic_train_config(config, regime, architecture, "trained", "iso", seed)["lr"]
    values = lrs + [default * factor for factor in factors]
    named: dict[str, float] = {}
    for value in values:
        text = format_lr(value)
        if text in named and not math.isclose(named[text], value, rel_tol=1e-12):
            raise ConfigError(
                f"length_study.sweep.lrs: {named[text]!r} and {value!r} share the run "
                f"directory lr{text} (differ beyond 6 significant digits)"
            )
        named[text] = value
    return sorted(named, key=float)


def sweep_budget(config: dict) -> int:
    return int(_sweep_config(config)["budget_samples"])


def sweep_first_samples(config: dict) -> int:
    """The sweep's first evaluation point (default: length_study.first_samples)."""
    return int(_sweep_config(config).get("first_samples", _length_config(config)["first_samples"]))


def sweep_runs(config: dict, regime: str | None = None) -> list[dict]:
    """The sweep's runs (all regimes, or one): every architecture x lr x batch size x
    seed, each a distinct run directory. Empty when the sweep is disabled."""
    sweep = _sweep_config(config)
    if not sweep.get("enabled", False):
        return []
    batch_sizes = _positive_numbers(sweep["batch_sizes"], "length_study.sweep.batch_sizes", int)
    runs = []
    for name in sweep["regimes"]:
        if regime is not None and name != regime:
            continue
        for architecture in sweep["architectures"]:
            for seed in sweep["seeds"]:
                for lr in sweep_learning_rates(config, name, architecture, seed):
                    for batch_size in sorted(set(batch_sizes)):
                        runs.append({"regime": name, "architecture": architecture, "lr": lr,
                                     "batch_size": batch_size, "seed": int(seed)})  # fmt: skip
    return runs


def sweep_run_dir(run: dict) -> str:
    return SWEEP_RUN_DIR.format(**run)


def sweep_train_config(
    config: dict,
    regime: str,
    architecture: str,
    lr: str | float,
    batch_size: int | str,
    seed: int | str,
) -> dict:
    """TrainConfig kwargs of a sweep run: the main run's values, the sweep's `training`
    overrides (no plateau stop by default), its budget, this lr and batch size, and
    snapshots at every doubling from the sweep's first point."""
    wanted = (regime, architecture, format_lr(float(lr)), int(batch_size), int(seed))
    if wanted not in {tuple(run[k] for k in SWEEP_RUN_KEYS) for run in sweep_runs(config)}:
        named = dict(zip(SWEEP_RUN_KEYS, wanted, strict=True))
        raise ValueError(f"length_study.sweep: no run {named}")
    return _dedicated_train_config(
        config, _sweep_config(config).get("training", {}), sweep_first_samples(config),
        regime, architecture, lr, batch_size, seed, sweep_budget(config),
    )  # fmt: skip


# Per run, at its first and its last point (the budget).
SWEEP_METRICS = [
    "recovered_count",
    "mcc",
    "mean_max_cosine",
    "explained_variance",
    "l0",
    "dead_fraction",
]


def sweep_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (regime, architecture, lr, batch size): each metric at the first and
    at the last evaluation point (mean over seeds), and whether more than half of the
    latents are dead at the last point."""
    keys = ["regime", "architecture", "cfg_lr", "cfg_batch_size"]
    metrics = [m for m in SWEEP_METRICS if m in frame.columns]
    rows = []
    for identity, curve in frame.groupby(keys, sort=True):
        means = curve.groupby("samples_seen")[metrics].mean().sort_index()
        first, last = means.index[0], means.index[-1]
        row = dict(zip(keys, identity, strict=True))
        row.update(seeds=curve["seed"].nunique(), first_samples=first, last_samples=last)
        for metric in metrics:
            row[f"{metric}_first"] = means.loc[first, metric]
            row[f"{metric}_last"] = means.loc[last, metric]
        row["dead_over_half"] = bool(means.loc[last, "dead_fraction"] > 0.5)
        rows.append(row)
    return pd.DataFrame(rows)


def sweep_best(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (regime, architecture), the lr x batch size with the most recovered features
    at the last point (ties: higher MCC, then EV), and the one with the highest MCC
    (ties: more recovered, then EV)."""
    orders = {
        "recovered_count": [f"{metric}_last" for metric in BEST_ORDER],
        "mcc": ["mcc_last", "recovered_count_last", "explained_variance_last"],
    }
    rows = []
    for (regime, architecture), group in summary.groupby(["regime", "architecture"], sort=True):
        for by, order in orders.items():
            best = group.sort_values(order, ascending=False, kind="stable").iloc[0]
            rows.append({"regime": regime, "architecture": architecture, "best_by": by,
                         **best.drop(["regime", "architecture"]).to_dict()})  # fmt: skip
    return pd.DataFrame(rows)


def evaluate_length_run(
    weights_path: str | Path,
    sae_config_path: str | Path,
    truth_path: str | Path,
    run: dict,
    regime_spec: dict,
    eval_samples: int,
    eval_batch_size: int,
    eval_seed: int,
    recovery_threshold: float,
    points_dir: str | Path,
    final_eval_json: str | Path | None = None,
    latent_classification: bool = True,
) -> pd.DataFrame:
    """One row per evaluation point of one run: every snapshot the run reached, then
    the final checkpoint (taken from `final_eval_json` when the main evaluation already
    scored it with the same code and settings, else evaluated here). Without
    `latent_classification` (the sweep) every point skips the per-latent metrics."""
    points_dir = Path(points_dir)
    sae_config_path = Path(sae_config_path)
    final_meta = json.loads(sae_config_path.read_text())
    train_config = final_meta["train_config"]
    final_samples = int(final_meta["samples_seen"])
    snapshots = Path(weights_path).parent / "snapshots"
    common = dict(
        truth_path=truth_path,
        run=run,
        regime_spec=regime_spec,
        eval_samples=eval_samples,
        eval_batch_size=eval_batch_size,
        eval_seed=eval_seed,
        recovery_threshold=recovery_threshold,
        latent_classification=latent_classification,
    )
    results = []
    # A run stopped by its plateau rule never reached the later points.
    for samples in sorted(s for s in train_config["snapshot_samples"] if s < final_samples):
        meta_path = snapshots / f"samples{samples}.json"
        snapshot_meta = json.loads(meta_path.read_text())
        # Snapshots are not outputs Snakemake tracks: refuse one left by another config.
        if snapshot_meta["train_config"] != train_config:
            raise ValueError(f"{meta_path}: written by a different training config than the run")
        results.append(
            evaluate_synthetic_run(
                snapshots / f"samples{samples}.safetensors",
                meta_path,
                out_json=points_dir / f"samples{samples}.json",
                out_recovery_csv=points_dir / f"samples{samples}_recovery.csv",
                **common,
            )
        )
    if final_eval_json is not None:
        final = json.loads(Path(final_eval_json).read_text())
        if final["train_config"] != train_config or final["training"]["samples_seen"] != (
            final_samples
        ):
            raise ValueError(f"{final_eval_json}: does not score {sae_config_path}")
    else:
        final = evaluate_synthetic_run(
            weights_path,
            sae_config_path,
            out_json=points_dir / f"samples{final_samples}.json",
            out_recovery_csv=points_dir / f"samples{final_samples}_recovery.csv",
            **common,
        )
    results.append(final)
    rows = []
    for result in results:
        row = dict(run)
        row["samples_seen"] = result["training"]["samples_seen"]
        row["final"] = result is final
        row["stop_reason"] = final["training"]["stop_reason"]
        row.update({key: result["metrics"][key] for key in POINT_METRICS})
        for key in ("lr", "batch_size", "max_samples"):
            row[f"cfg_{key}"] = train_config[key]
        row["cfg_auxk_values"] = train_config.get("auxk_values", "post_relu")
        rows.append(row)
    return pd.DataFrame(rows)


def group_columns(frame: pd.DataFrame) -> list[str]:
    """The columns that identify a curve (seeds excluded)."""
    keys = [
        "regime", "architecture", "variant", "init", "cfg_lr", "cfg_batch_size",
        "cfg_auxk_values",
    ]  # fmt: skip
    return [key for key in keys if key in frame.columns]


def settled_table(
    frame: pd.DataFrame, tolerance: float, relative_tolerance: float = 0.0
) -> pd.DataFrame:
    """Per curve (mean over seeds at each point): the first point from which every
    later doubling changes explained variance and recovered fraction by less than
    `tolerance` (absolute) and the recovered fraction also by less than
    `relative_tolerance` of the larger of its two values (a count that goes 12 -> 30
    of 3,200 moves by 0.006 only, yet has not stopped changing), with the values there
    and at the last point. NaN when the last doubling still moves one of them.

    Changes are paired: each seed's change from its own previous point, averaged over
    the seeds that have the point. Runs that stop on a plateau end at different sample
    counts (one seed at 1.5M, two at 2M), and a difference of means over different seeds
    would measure the seeds, not training. `seeds` is the fewest seeds at any point,
    `seeds_first` and `seeds_last` those at the first and the last point.
    """
    rows = []
    keys = group_columns(frame)
    metrics = list(SETTLE_METRICS)
    for identity, curve in frame.groupby(keys, sort=True):
        means = curve.groupby("samples_seen")[metrics].mean().sort_index()
        seeds = curve.groupby("samples_seen")["seed"].nunique()
        samples = list(means.index)
        per_seed = curve.groupby(["seed", "samples_seen"])[metrics].mean().sort_index()
        previous = per_seed.groupby(level="seed").shift()
        changes = (per_seed - previous).groupby(level="samples_seen").mean().abs()
        changes = changes.reindex(samples)
        recovered = per_seed["recovered_fraction"]
        larger = pd.concat([recovered, previous["recovered_fraction"]], axis=1).max(axis=1)
        relative_scale = relative_tolerance * larger.groupby(level="samples_seen").mean()
        relative_scale = relative_scale.reindex(samples)
        # One point alone says nothing about change.
        settled_at = samples[0] if len(samples) > 1 else math.nan
        for index in range(1, len(samples)):
            moved = any(changes.iloc[index][m] >= tolerance for m in metrics)
            scale = relative_scale.iloc[index]
            moved = moved or (scale > 0 and changes.iloc[index]["recovered_fraction"] >= scale)
            if moved:
                settled_at = samples[index] if index + 1 < len(samples) else math.nan
        row = dict(zip(keys, identity, strict=True))
        last = samples[-1]
        row.update(
            tolerance=tolerance,
            relative_tolerance=relative_tolerance,
            points=len(samples),
            seeds=int(seeds.min()),
            seeds_first=int(seeds.iloc[0]),
            seeds_last=int(seeds.loc[last]),
            last_samples=last,
            settled_samples=settled_at,
        )
        for metric in metrics:
            row[f"{metric}_last"] = means.loc[last, metric]
            row[f"{metric}_last_change"] = changes.iloc[-1][metric] if len(samples) > 1 else 0.0
            row[f"{metric}_settled"] = (
                means.loc[settled_at, metric] if not math.isnan(settled_at) else math.nan
            )
        rows.append(row)
    return pd.DataFrame(rows)


def long_best(frame: pd.DataFrame, settled: pd.DataFrame) -> pd.DataFrame:
    """Per (regime, architecture), the long runs' setting that recovers the most
    features at the longest length every setting of that architecture reached (mean over
    seeds; ties: higher MCC, then EV), and whether that answer is evidence:

    * `bracketed`: the nearest lower and the nearest higher learning rate run at the same
      batch size and AuxK form both recovered fewer features. A best rate at the edge of
      the rates run says only that the optimum lies at or beyond it.
    * `settled_samples`: where its curve stopped changing by the settle rule (`settled`,
      from `settled_table`), judged up to its last point, which may be longer than the
      compared one; NaN when it has not.
    * `status`: "settled optimum" when both hold and a feature was recovered, else what
      is missing.

    `recovered_count_min`/`_max` are the range over seeds at the compared length: with
    one seed there is no interval, and `seeds` says so.
    """
    keys = group_columns(frame)
    setting_keys = [key for key in keys if key not in ("regime", "architecture")]
    settled_at = settled.set_index(keys)["settled_samples"]
    rows = []
    for (regime, architecture), runs in frame.groupby(["regime", "architecture"], sort=True):
        compared_at = runs.groupby(setting_keys)["samples_seen"].max().min()
        # Each seed's last point at or below the compared length (a run stopped on a
        # plateau has no row exactly there).
        upto = runs[runs["samples_seen"] <= compared_at].reset_index(drop=True)
        last = upto.loc[upto.groupby(setting_keys + ["seed"])["samples_seen"].idxmax()]
        metrics = [m for m in POINT_METRICS if m in last.columns]
        per_setting = last.groupby(setting_keys)[metrics].mean()
        spread = last.groupby(setting_keys)["recovered_count"].agg(["min", "max", "count"])
        per_setting = per_setting.join(spread).reset_index()
        ranked = per_setting.sort_values(BEST_ORDER, ascending=False, kind="stable")
        best = ranked.iloc[0]
        runner_up = ranked.iloc[1] if len(ranked) > 1 else pd.Series(dtype=float)

        # The rates run beside the best one: same batch size and AuxK form.
        same_form = per_setting
        for key in setting_keys:
            if key != "cfg_lr":
                same_form = same_form[same_form[key] == best[key]]
        lower = same_form[same_form["cfg_lr"] < best["cfg_lr"]]
        higher = same_form[same_form["cfg_lr"] > best["cfg_lr"]]
        bracketed = (
            not lower.empty
            and not higher.empty
            and lower.loc[lower["cfg_lr"].idxmax(), "recovered_count"] < best["recovered_count"]
            and higher.loc[higher["cfg_lr"].idxmin(), "recovered_count"] < best["recovered_count"]
        )
        settled_samples = settled_at.loc[(regime, architecture, *[best[k] for k in setting_keys])]
        is_settled = not math.isnan(settled_samples)
        missing = []
        if best["recovered_count"] == 0:
            missing.append("nothing recovered at any setting")
        if not bracketed:
            missing.append("best rate at the edge of the rates run")
        if not is_settled:
            missing.append("not settled")

        row = {"regime": regime, "architecture": architecture}
        row.update({key: best[key] for key in setting_keys})
        row.update(
            settings=len(per_setting),
            compared_samples=int(compared_at),
            seeds=int(best["count"]),
            recovered_count=best["recovered_count"],
            recovered_count_min=best["min"],
            recovered_count_max=best["max"],
        )
        row.update({metric: best[metric] for metric in metrics if metric != "recovered_count"})
        row.update(
            runner_up_lr=runner_up.get("cfg_lr", math.nan),
            runner_up_batch_size=runner_up.get("cfg_batch_size", math.nan),
            runner_up_recovered_count=runner_up.get("recovered_count", math.nan),
            bracketed=bool(bracketed),
            settled_samples=settled_samples,
            status="; ".join(missing) if missing else "settled optimum",
        )
        rows.append(row)
    return pd.DataFrame(rows)


def sensitivity_table(frame: pd.DataFrame, budget: int) -> pd.DataFrame:
    """Metrics at the sensitivity budget per (regime, architecture, lr, batch size):
    each run's last point at or below `budget` (its final checkpoint, or the long
    run's snapshot there), mean and std over seeds."""
    keys = ["regime", "architecture", "cfg_lr", "cfg_batch_size", "seed"]
    eligible = frame[frame["samples_seen"] <= budget]
    final = eligible.loc[eligible.groupby(keys)["samples_seen"].idxmax()]
    keys = ["regime", "architecture", "cfg_lr", "cfg_batch_size"]
    metrics = ["samples_seen", *(m for m in POINT_METRICS if m in frame.columns)]
    table = final.groupby(keys)[metrics].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    table["seeds"] = final.groupby(keys)["seed"].nunique()
    return table.reset_index()


def settled_from_tables(
    paths: list[str | Path], tolerance: float, relative_tolerance: float
) -> pd.DataFrame | None:
    """`settled_table` of the runs whose point tables are `paths` (None for no paths:
    the length study does not follow them)."""
    if not paths:
        return None
    return settled_table(read_tables(paths), tolerance, relative_tolerance)


def read_tables(paths: list[str | Path]) -> pd.DataFrame:
    frame = pd.concat([pd.read_csv(path) for path in paths], ignore_index=True)
    if "cfg_auxk_values" in frame.columns:  # tables from before it was recorded
        frame["cfg_auxk_values"] = frame["cfg_auxk_values"].fillna("post_relu")
    return frame


def check_length_config(config: dict) -> None:
    """Cross-field checks of `length_study`; raise ConfigError naming the key."""
    study = _length_config(config)
    regimes = set(config["synthetic"]["regimes"])
    for part in ("long", "sensitivity"):
        spec = study.get(part, {})
        if not spec.get("enabled", False):
            continue
        for regime in spec["regimes"]:
            if regime not in regimes:
                raise ConfigError(
                    f"length_study.{part}.regimes: {regime!r} is not a regime defined under "
                    f"synthetic.regimes ({sorted(regimes)})"
                )
    if study.get("sensitivity", {}).get("enabled", False):
        if not study.get("long"):
            raise ConfigError("length_study.sensitivity: needs length_study.long (training)")
        budget = sensitivity_budget(config)
        for run in long_runs(config, include_long=False):
            # A long run standing in for a sensitivity point must pass through the budget.
            if run["budget"] != budget and budget not in evaluation_points(
                study["first_samples"], run["budget"], run["batch_size"]
            ):
                raise ConfigError(
                    f"length_study.sensitivity.budget_samples: {budget} is not an evaluation "
                    f"point of the long run {run}"
                )
    for architecture, settings in study.get("long", {}).get("settings", {}).items():
        uses_auxk = issubclass(REGISTRY[architecture], TopKFamilySAE)
        if not uses_auxk and any("auxk_values" in setting for setting in settings):
            raise ConfigError(
                f"length_study.long.settings.{architecture}: auxk_values applies to the "
                f"TopK family only ({architecture} has no AuxK)"
            )
    for run in long_runs(config):
        try:
            long_train_config(config, **run)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"length_study run {run}: {error}") from error
    sweep = _sweep_config(config)
    if sweep.get("enabled", False):
        for key in ("regimes", "architectures", "seeds", "batch_sizes", "budget_samples"):
            if key not in sweep:
                raise ConfigError(f"length_study.sweep.{key}: missing")
        for regime in sweep["regimes"]:
            if regime not in regimes:
                raise ConfigError(
                    f"length_study.sweep.regimes: {regime!r} is not a regime defined under "
                    f"synthetic.regimes ({sorted(regimes)})"
                )
        _positive_numbers([sweep["budget_samples"]], "length_study.sweep.budget_samples", int)
        if "first_samples" in sweep:
            _positive_numbers([sweep["first_samples"]], "length_study.sweep.first_samples", int)
        for run in sweep_runs(config):  # also checks lrs, lr_factors and batch_sizes
            try:
                sweep_train_config(config, **run)
            except (ValueError, TypeError) as error:
                if isinstance(error, ConfigError):
                    raise
                raise ConfigError(f"length_study.sweep run {run}: {error}") from error


def run_identity(wildcards: dict) -> dict:
    """Run identity from a rule's wildcards (main or dedicated run), typed."""
    run = {"variant": "trained", "init": "iso", **wildcards}
    if "auxk_tag" in run:  # a long run: name its AuxK form, not the directory's tag
        run["auxk"] = AUXK_NAMES[run.pop("auxk_tag")]
    run["seed"] = int(run["seed"])
    if "batch_size" in run:
        run["batch_size"] = int(run["batch_size"])
    return run


# --------------------------------------------------------- workflow file lists


def main_point_tables(config: dict, regime: str | None = None) -> list[str]:
    """Per-run point tables of the main synthetic runs the length study follows (of one
    regime, or all)."""
    main = _length_config(config).get("main", {})
    if not main.get("enabled", False):
        return []
    return [
        f"{run_dir(run)}/length.csv"
        for run in synthetic_runs(config)
        if run["variant"] in main["variants"]
        and run["init"] in main["inits"]
        and regime in (None, run["regime"])
    ]


def long_point_tables(
    config: dict, include_long: bool = True, include_sensitivity: bool = True
) -> list[str]:
    runs = long_runs(config, include_long, include_sensitivity)
    return [f"{long_run_dir(run)}/length.csv" for run in runs]


def source_point_tables(config: dict, source: str) -> list[str]:
    if source == "main":
        return main_point_tables(config)
    return long_point_tables(config, include_sensitivity=False)


def length_targets(config: dict) -> list[str]:
    """Final outputs of the enabled parts of the length study."""
    study = _length_config(config)
    targets = []
    for source in ("main", "long"):
        if study.get(source, {}).get("enabled", False):
            targets += [
                f"results/length/{source}.csv",
                f"results/length/{source}_settled.csv",
                f"figures/length_{source}.pdf",
            ]
    if study.get("long", {}).get("enabled", False):
        targets.append("results/length/long_best.csv")
    if study.get("sensitivity", {}).get("enabled", False):
        targets += ["results/length/sensitivity.csv", "figures/length_sensitivity.pdf"]
    if _sweep_config(config).get("enabled", False):
        for regime in _sweep_config(config)["regimes"]:
            targets += sweep_targets(regime)
    return targets


def sweep_targets(regime: str) -> list[str]:
    """The sweep's tables and figure of one regime."""
    return [
        f"results/length/sweep_{regime}.csv",
        f"results/length/sweep_{regime}_summary.csv",
        f"results/length/sweep_{regime}_best.csv",
        f"figures/length_sweep_{regime}.pdf",
    ]


def sweep_point_tables(config: dict, regime: str) -> list[str]:
    return [f"{sweep_run_dir(run)}/length.csv" for run in sweep_runs(config, regime)]
