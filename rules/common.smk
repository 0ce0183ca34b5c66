# Shared helpers: config checks, wildcard constraints, run lists.

from saesanity import workflow as saesanity_workflow
from saesanity.sae import ARCHITECTURES
from saesanity.training import INITS, VARIANTS

saesanity_workflow.check_config(config)

SYNTHETIC = config["synthetic"]
SYNTHETIC_RUNS = saesanity_workflow.synthetic_runs(config)
RUN_DIR = saesanity_workflow.SYNTHETIC_RUN_DIR
RUN_PATH = RUN_DIR.replace("results/synthetic/", "")  # for logs and benchmarks


wildcard_constraints:
    regime="|".join(sorted(SYNTHETIC["regimes"])),
    architecture="|".join(ARCHITECTURES),
    variant="|".join(VARIANTS),
    init="|".join(INITS),
    seed=r"\d+",


def synthetic_run_files(name, regime=None, study_only=False):
    """Per-run files (`name` in the run directory) of the enabled runs."""
    return [
        f"{saesanity_workflow.run_dir(run)}/{name}"
        for run in SYNTHETIC_RUNS
        if (regime is None or run["regime"] == regime)
        and (not study_only or (run["variant"] == "trained" and run["init"] == "iso"))
    ]


def synthetic_regimes():
    return sorted({run["regime"] for run in SYNTHETIC_RUNS})
