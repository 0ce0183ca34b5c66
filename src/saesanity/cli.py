"""`saesanity`: the workflow's command line, a thin layer over `snakemake`.

    saesanity check-config config/smoke.yaml        # is this config file usable?
    saesanity run all --cores 2 --configfile config/smoke.yaml

`run` checks every `--configfile` first and then hands the same arguments to
Snakemake. Snakemake reads config files before the workflow starts, so a missing
file ends in a traceback and a YAML syntax error in "Config file is not valid JSON
or YAML", naming neither the file nor the line; here each is one line that does.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from saesanity.workflow import ConfigError, check_config, validate_config


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="saesanity", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check-config", help="check config files (merged on config.yaml)")
    check.add_argument("files", nargs="*")
    commands.add_parser(
        "run", help="check the --configfile arguments, then run snakemake with every argument"
    )
    arguments, rest = parser.parse_known_args(argv)
    try:
        if arguments.command == "check-config":
            check_config_files(arguments.files)
            print(f"config OK: config.yaml {' '.join(arguments.files)}".rstrip())
            return 0
        check_config_files(configfiles_in(rest))
    except ConfigError as error:
        print(f"saesanity: {error}", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "snakemake", *rest]
    os.execv(sys.executable, command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
