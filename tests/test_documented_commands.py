"""Every `snakemake` command the README and docs/ show works as written: each is parsed
out of the Markdown (fenced blocks and inline code) and dry-run from the repository."""

import re
import shlex
import subprocess
import sys

import pytest
from conftest import REPO

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Commands that need a finished run (or change state) are parsed but not run.
NOT_DRY_RUN = ("--report", "--unlock")


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) for every snakemake command line in the documents."""
    found = {}
    for document in DOCUMENTS:
        text = document.read_text()
        blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.S)
        lines = [line for block in blocks for line in block.splitlines()]
        inline = re.findall(r"`(snakemake [^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for line in [*lines, *inline]:
            command = line.split(" #")[0].strip()
            if command.startswith("snakemake ") and "..." not in command and "<" not in command:
                found.setdefault(command, f"{document.name}")
    return sorted((where, command) for command, where in found.items())


COMMANDS = documented_commands()


def test_the_documents_show_commands():
    assert len(COMMANDS) >= 8
    assert any("--configfile config/paper.yaml" in command for _, command in COMMANDS)


def test_no_target_follows_a_configfile():
    """`--configfile a.yaml all` reads `all` as a config file (Snakemake takes every
    following word as a file): targets come first."""
    for where, command in COMMANDS:
        words = shlex.split(command)
        if "--configfile" not in words:
            continue
        after = words[words.index("--configfile") + 1 :]
        files = []
        for word in after:
            if word.startswith("-"):
                break
            files.append(word)
        assert all(word.endswith((".yaml", ".yml", ".json")) for word in files), (where, command)


@pytest.mark.parametrize("where, command", COMMANDS)
def test_documented_command_dry_runs(where, command):
    words = shlex.split(command)
    if any(flag in words for flag in NOT_DRY_RUN):
        pytest.skip("needs a finished run")
    if any(word.endswith(".yaml") and not (REPO / word).exists() for word in words):
        pytest.skip("names the reader's own config file")
    words = [word for word in words if word not in ("-n", "--dry-run")]
    extra = [] if "--lint" in words else ["-n"]
    result = subprocess.run(
        [sys.executable, "-m", *words, *extra], capture_output=True, text=True, cwd=REPO
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{where}: {command}\n{output[-3000:]}"


# Maps whose keys are names the user chooses (groups, regimes, families, ...) or training
# fields (checked against TrainConfig in tests/test_training.py): below them only the map
# itself must be documented.
FREE_FORM = ("runs", "regimes", "training", "architectures", "by_l0", "huggingface",
             "classes", "variants", "attributes")  # fmt: skip


def config_keys(mapping: dict, path: tuple = ()) -> list[tuple]:
    keys = []
    for key, value in mapping.items():
        keys.append((*path, str(key)))
        if isinstance(value, dict) and str(key) not in FREE_FORM:
            keys += config_keys(value, (*path, str(key)))
    return keys


def test_every_config_key_is_in_the_config_guide():
    import yaml

    guide = (REPO / "docs" / "config.md").read_text()
    spans = " ".join(re.findall(r"`([^`]+)`", guide))
    tokens = set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", spans))
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    missing = [".".join(path) for path in config_keys(config) if path[-1] not in tokens]
    assert not missing, f"docs/config.md does not document {missing}"
    # Every training field a config sets is in the training table.
    for study in ("synthetic", "real"):
        for key in config[study]["training"]:
            assert f"`{key}`" in guide or f"`{key}`," in guide or key in tokens, key
