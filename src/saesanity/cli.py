"""`saesanity`: the workflow's command line, a thin layer over `snakemake`.

    saesanity check path/to/sae --cores 8           # sanity-check your own SAE
    saesanity check-config config/smoke.yaml        # is this config file usable?
    saesanity run all --cores 2 --configfile config/smoke.yaml

`check` runs the workflow twice: first to measure the SAE's L0 on held-out tokens of
its model and hook, then, with the real grid set to that L0 and the SAE's width, to
train and evaluate its random baselines and write the verdict
(results/sanity/<name>/report.html).

`run` checks every `--configfile` first and then hands the same arguments to
Snakemake. Snakemake reads config files before the workflow starts, so a missing
file ends in a traceback and a YAML syntax error in "Config file is not valid JSON
or YAML", naming neither the file nor the line; here each is one line that does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from saesanity.studies.runs import ConfigError, check_config, validate_config
from saesanity.studies.sanity import UserSAEError, read_saelens_sae, sanity_overlay


def workflow_dir() -> Path:
    """The workflow's folder: the working directory (where `snakemake` runs), else the
    checkout this package was installed from."""
    here = Path.cwd()
    return here if (here / "Snakefile").exists() else Path(__file__).resolve().parents[2]


def load_config_file(path: str | Path) -> dict:
    """One config file, or a ConfigError naming the file (and the line of a YAML error)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--configfile {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def merged_config(paths: list[str | Path], base: str | Path | None = None) -> dict:
    """config.yaml, then each file in order, merged as Snakemake merges them."""
    from snakemake.utils import update_config

    config = load_config_file(base or workflow_dir() / "config.yaml")
    for path in paths:
        update_config(config, load_config_file(path))
    return config


def check_config_files(paths: list[str | Path], base: str | Path | None = None) -> dict:
    """Every file readable, and the merged config valid (schema, then cross-field)."""
    config = merged_config(paths, base)
    validate_config(config, workflow_dir() / "schemas" / "config.schema.yaml")
    check_config(config)
    return config


def configfiles_in(arguments: list[str]) -> list[str]:
    """The files named after `--configfile`/`--configfiles` (up to the next option)."""
    files, taking = [], False
    for argument in arguments:
        if argument in ("--configfile", "--configfiles"):
            taking = True
        elif argument.startswith("--configfile=") or argument.startswith("--configfiles="):
            files.append(argument.split("=", 1)[1])
            taking = False
        elif argument.startswith("-"):
            taking = False
        elif taking:
            files.append(argument)
    return files


def _snakemake(target: str, configfiles: list[str], passthrough: list[str]) -> None:
    """`snakemake target` in the working directory, with the workflow's Snakefile and
    config.yaml wherever they are (so a check can run in a folder of its own)."""
    base = workflow_dir()
    command = [sys.executable, "-m", "snakemake", target, "--snakefile", str(base / "Snakefile")]
    command += [*passthrough, "--configfile", str(base / "config.yaml"), *configfiles]
    print("+", " ".join(command[1:]), flush=True)
    result = subprocess.run(command)
    if result.returncode != 0:
        raise SystemExit(result.returncode)


def write_yaml(path: Path, data: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def check_sae(
    sae_path: str, name: str | None, configfiles: list[str], passthrough: list[str]
) -> Path:
    """The sanity check of the SAE in `sae_path`; returns its report's path."""
    from snakemake.utils import update_config

    config = check_config_files(configfiles)
    user = read_saelens_sae(sae_path, config["sanity"].get("baseline_architecture"))
    name = name or Path(sae_path).resolve().name
    folder = Path("results") / "sanity" / name
    # Stage 1: the SAE's model, hook and width; measure its held-out L0.
    stage = sanity_overlay(config, user, l0=1.0, seeds=config["sanity"]["seeds"], variants={})
    first = {
        "real": {"model": stage["real"]["model"], "d_sae": stage["real"]["d_sae"]},
        "sanity": {"sae": str(Path(sae_path).resolve()), "name": name},
    }
    first_file = write_yaml(folder / "measure.yaml", first)
    _snakemake(str(folder / "l0.json"), [*configfiles, first_file], passthrough)
    measured = json.loads((folder / "l0.json").read_text())["l0"]
    # Stage 2: the baselines at that L0, every evaluation, the verdict.
    second = sanity_overlay(
        config, user, measured, config["sanity"]["seeds"], config["sanity"]["variants"]
    )
    update_config(second, {"sanity": first["sanity"]})
    # The evaluations that run at chosen L0s run at the SAE's.
    second.update(sparse_probing={"l0s": None}, ravel={"l0s": None})
    second_file = write_yaml(folder / "check.yaml", second)
    check_config_files([*configfiles, second_file])
    if user.architecture == "relu":
        # ReLU baselines: calibrate each one's L1 coefficient to the SAE's L0 first.
        _snakemake(str(folder / "relu_l1.json"), [*configfiles, second_file], passthrough)
        calibrated = json.loads((folder / "relu_l1.json").read_text())["by_l0"]
        update_config(second, {"real": {"by_l0": {"relu": calibrated}}})
        second_file = write_yaml(folder / "check.yaml", second)
        check_config_files([*configfiles, second_file])
    _snakemake("sanity", [*configfiles, second_file], passthrough)
    return folder / "report.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="saesanity", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check-config", help="check config files (merged on config.yaml)")
    check.add_argument("files", nargs="*")
    commands.add_parser(
        "run", help="check the --configfile arguments, then run snakemake with every argument"
    )
    sanity = commands.add_parser(
        "check",
        help="sanity-check an SAE in SAELens's format against its random baselines "
        "(other arguments go to snakemake, e.g. --cores 8)",
    )
    sanity.add_argument("sae", help="directory with cfg.json and sae_weights.safetensors")
    sanity.add_argument("--name", help="the check's folder results/sanity/<name>")
    sanity.add_argument("--configfile", nargs="*", default=[], help="extra config files")
    arguments, rest = parser.parse_known_args(argv)
    try:
        if arguments.command == "check":
            report = check_sae(arguments.sae, arguments.name, arguments.configfile, rest)
            print(f"sanity check: {report}")
            return 0
        if arguments.command == "check-config":
            check_config_files(arguments.files)
            print(f"config OK: config.yaml {' '.join(arguments.files)}".rstrip())
            return 0
        check_config_files(configfiles_in(rest))
    except (ConfigError, UserSAEError) as error:
        print(f"saesanity: {error}", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "snakemake", *rest]
    os.execv(sys.executable, command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
