"""RAVEL: entity positions, the masked intervention against plain patching, pairs."""

import random
from pathlib import Path

import pytest
import torch
import yaml

from saesanity.core.architectures import make_sae
from saesanity.evals.ravel import (
    IdentityCodec,
    SaeCodec,
    build_pairs,
    edited_logits,
    sample_pairs,
    summarise,
)
from saesanity.evals.ravel_data import (
    Entity,
    Prompt,
    RavelDataError,
    build_prompts,
    hub_prompts,
    pad_batch,
    tokenise_prompts,
)


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


def test_entity_position_is_the_last_token_of_a_multi_token_name(tokenizer):
    entities = [
        Entity("person", "Alan Alexander Milne", {"country": "England", "occupation": "writer"}),
        Entity("city", "Shanghai", {"country": "China"}),
    ]
    prompts = tokenise_prompts(build_prompts(entities), tokenizer, bos_token_id=1)
    assert len(prompts) == 6 + 3
    for tokenised in prompts:
        prompt, position = tokenised.prompt, tokenised.entity_position
        assert tokenised.tokens[0] == 1
        up_to_entity = tokenizer.decode(tokenised.tokens[1 : position + 1])
        after_entity = tokenizer.decode(tokenised.tokens[position + 1 :])
        assert up_to_entity == prompt.text[: prompt.entity_end]
        assert after_entity == prompt.text[prompt.entity_end :]
        if prompt.entity_type == "person":  # a three-word name is several tokens
            last_token = tokenizer.decode(tokenised.tokens[position : position + 1])
            assert prompt.entity.endswith(last_token) and len(last_token) < len("Milne")
    # The value is the continuation with its leading space, e.g. " China".
    city = [p for p in prompts if p.prompt.entity == "Shanghai"][0]
    assert tokenizer.decode(city.value_tokens) == " China"


def _two_prompts(model):
    prompts = [
        Prompt("city", "Paris", "country", 0, "Paris is a city in the country of", "France", 0, 5),
        Prompt("city", "Tokyo", "country", 0, "The city of Tokyo is in the country of", "Japan",
               12, 17),
    ]  # fmt: skip
    tokenised = tokenise_prompts(prompts, model.tokenizer, model.bos_token_id)
    tokens, lengths = pad_batch([p.tokens for p in tokenised], model.bos_token_id)
    positions = torch.tensor([p.entity_position for p in tokenised])
    return tokens, lengths, positions


def _patched_logits(model, tokens, lengths, position, vector):
    """Reference: a full forward pass with one position of the hook overwritten."""

    def replace(activation):
        activation = activation.clone()
        activation[0, position] = vector
        return activation

    return model.logits_with_replacement(tokens, replace)[0, lengths[0] - 1]


def test_identity_with_mask_of_ones_equals_activation_patching(language_model):
    model = language_model
    tokens, lengths, positions = _two_prompts(model)
    residual = model.residual(tokens)
    base, source = 0, 1
    source_vector = residual[source, positions[source]]
    logits = edited_logits(
        model,
        IdentityCodec(model.d_model),
        residual[base : base + 1, : lengths[base]],
        lengths[base : base + 1],
        positions[base : base + 1],
        source_vector[None],
        torch.ones(model.d_model),
    )
    single = tokens[base : base + 1, : lengths[base]]
    patched = _patched_logits(model, single, lengths, int(positions[base]), source_vector)
    torch.testing.assert_close(logits[0], patched, atol=1e-3, rtol=1e-4)
    # Patching the Tokyo residual into the Paris prompt changes the prediction.
    clean = model.logits(single)[0, lengths[base] - 1]
    assert not torch.allclose(logits[0], clean, atol=1e-2)


def test_sae_with_mask_of_zeros_equals_the_run_through_the_reconstruction(language_model):
    model = language_model
    generator = torch.Generator().manual_seed(0)
    sae = make_sae("topk", model.d_model, 256, k=16)
    directions = torch.randn(256, model.d_model, generator=generator)
    sae.initialise(directions, b_dec=torch.zeros(model.d_model))
    tokens, lengths, positions = _two_prompts(model)
    residual = model.residual(tokens)
    base, source = 1, 0
    codec = SaeCodec(sae)
    logits = edited_logits(
        model,
        codec,
        residual[base : base + 1, : lengths[base]],
        lengths[base : base + 1],
        positions[base : base + 1],
        residual[source, positions[source]][None],
        torch.zeros(sae.d_sae),
    )
    single = tokens[base : base + 1, : lengths[base]]
    reconstruction = sae(residual[base, positions[base]][None])[0]
    patched = _patched_logits(model, single, lengths[base:], int(positions[base]), reconstruction)
    torch.testing.assert_close(logits[0], patched, atol=1e-3, rtol=1e-4)
    # A mask of ones writes the source's reconstruction instead: different logits.
    ones = edited_logits(
        model,
        codec,
        residual[base : base + 1, : lengths[base]],
        lengths[base : base + 1],
        positions[base : base + 1],
        residual[source, positions[source]][None],
        torch.ones(sae.d_sae),
    )
    assert not torch.allclose(ones, logits, atol=1e-3)


def test_edited_logits_have_gradients_for_the_mask_only(language_model):
    model = language_model
    model.freeze()
    tokens, lengths, positions = _two_prompts(model)
    residual = model.residual(tokens)
    mask_logits = torch.zeros(model.d_model, requires_grad=True)
    logits = edited_logits(
        model,
        IdentityCodec(model.d_model),
        residual,
        lengths,
        positions,
        residual[[1, 0], positions[[1, 0]]],
        torch.sigmoid(mask_logits),
    )
    logits[:, 0].sum().backward()
    assert mask_logits.grad is not None and mask_logits.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.bridge.parameters())


def _records():
    """Kept prompts of 8 cities (2 attributes) and 1 person attribute with 2 entities."""
    records = []
    countries = ["France", "Japan", "Peru", "Chad"]
    for i in range(8):
        split = "train" if i < 5 else "validation"
        for attribute, value in [("country", countries[i % 4]), ("continent", f"C{i % 2}")]:
            records.append(
                {"entity_type": "city", "entity": f"city{i}", "attribute": attribute,
                 "split": split, "value": value, "first": hash(value) % 1000}
            )  # fmt: skip
    for i in range(2):
        records.append(
            {"entity_type": "person", "entity": f"p{i}", "attribute": "occupation",
             "split": "train", "value": "writer", "first": 7}
        )  # fmt: skip
    for index, record in enumerate(records):
        record["index"] = index
    return records


def test_pairs_are_split_by_entity_and_values_differ():
    records = _records()
    settings = {"seed": 0, "min_entities": 2, "pairs": {"train_cause": 6, "validation_cause": 4}}
    asked = [("city", "continent"), ("city", "country"), ("person", "country"),
             ("person", "occupation")]  # fmt: skip
    attributes, dropped = build_pairs(records, settings, asked)
    assert set(attributes) == {"city/country", "city/continent"}
    assert "person/occupation" in dropped  # 0 validation entities
    assert "person/country" in dropped  # no prompt answered correctly at all
    by_index = {r["index"]: r for r in records}
    for key, splits in attributes.items():
        attribute = key.split("/")[1]
        for split, pairs in splits.items():
            causes = [p for p in pairs if p[2] == "cause"]
            isolations = [p for p in pairs if p[2] == "isolation"]
            assert causes and len(isolations) == len(causes)
            for base, source, kind in pairs:
                b, s = by_index[base], by_index[source]
                assert b["split"] == s["split"] == split  # entities never cross splits
                assert b["entity"] != s["entity"] and b["first"] != s["first"]
                assert (b["attribute"] == attribute) == (kind == "cause")


def test_sample_pairs_without_two_values_gives_none():
    prompts = [{"index": i, "entity": f"e{i}", "first": 5} for i in range(4)]
    assert sample_pairs(prompts, 3, random.Random(0), "cause") == []


def test_summary_averages_attributes_then_entity_types():
    scores = {
        "city/country": {"cause": 1.0, "isolation": 0.0, "disentanglement": 0.5},
        "city/continent": {"cause": 1.0, "isolation": 1.0, "disentanglement": 1.0},
        "person/occupation": {"cause": 0.0, "isolation": 0.0, "disentanglement": 0.0},
    }
    metrics = summarise(scores)
    assert metrics["ravel_cause"] == pytest.approx(0.5)  # (1 + 0) / 2, not 2/3
    assert metrics["ravel_disentanglement"] == pytest.approx((0.75 + 0.0) / 2)
    assert metrics["ravel_city_continent"] == 1.0


def _config(**ravel):
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    config["ravel"].update(ravel)
    return config


def test_ravel_l0s_must_be_l0s_of_the_real_grid():
    from saesanity.evals.ravel import RavelConfigError, check_ravel_config, ravel_l0s

    check_ravel_config(_config())
    assert ravel_l0s(_config(l0s=[40])) == [40]
    assert ravel_l0s(_config(l0s=None)) == [20, 40, 80]
    with pytest.raises(RavelConfigError, match=r"ravel.l0s: \[33\]"):
        check_ravel_config(_config(l0s=[33]))


@pytest.mark.parametrize(
    "bad, named",
    [
        ({"min_entities": 1}, "min_entities"),
        ({"mask": {"lr": 0}}, "lr"),
        ({"pairs": {}}, "train_cause"),
    ],
)
def test_bad_ravel_config_is_rejected_by_the_schema(bad, named):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    config = _config(**bad)
    schema = Path(__file__).resolve().parents[1] / "schemas/config.schema.yaml"
    with pytest.raises(WorkflowError, match=named):
        validate(config, str(schema))


# ------------------------------------------------------- SAEBench's hub prompts
# Shaped exactly as SAEBench reads them (sae_bench/evals/ravel/instance.py,
# RAVELInstance.load_files / build_and_tokenize_prompts; anchor_protocols.md section 3):
# ravel_city_entity_attributes.json is {entity: {attribute: value}} and
# ravel_city_attribute_to_prompts.json is {attribute: [template with "%s"]}; templates
# are plain cloze strings or JSON-style ones ending in an open quote; an empty value
# means unknown; SAEBench's language checker accepts any of comma-separated languages.
HUB_ENTITY_ATTRIBUTES = {
    "Ho Chi Minh City": {"Country": "Vietnam", "Continent": "Asia", "Language": "Vietnamese",
                         "Timezone": "Asia/Ho_Chi_Minh"},
    "Paris": {"Country": "France", "Continent": "Europe", "Language": "French",
              "Timezone": "Europe/Paris"},
    "Brussels": {"Country": "Belgium", "Continent": "Europe", "Language": "Dutch, French",
                 "Timezone": "Europe/Brussels"},
    "Atlantis": {"Country": "", "Continent": "", "Language": "", "Timezone": ""},
}  # fmt: skip
HUB_ATTRIBUTE_TO_PROMPTS = {
    "Country": [
        "%s is a city in the country of",
        '[{"city": "Tokyo", "country": "Japan"}, {"city": "%s", "country": "',
    ],
    "Continent": ["%s is a city on the continent of", "%s and %s are on the same continent"],
    "Language": ["People in %s usually speak"],
    "Timezone": ["The time zone of %s is"],
}
HUB_ATTRIBUTES = ["Country", "Continent", "Language"]


def test_hub_files_become_the_offline_records(tokenizer):
    entities, prompts = hub_prompts(
        "city", HUB_ENTITY_ATTRIBUTES, HUB_ATTRIBUTE_TO_PROMPTS, HUB_ATTRIBUTES, None, None, 0
    )
    # Atlantis has no value: no entity. Timezone is not asked. The first language counts.
    assert [e.name for e in entities] == ["Brussels", "Ho Chi Minh City", "Paris"]
    assert entities[0] == Entity(
        "city", "Brussels", {"country": "Belgium", "continent": "Europe", "language": "Dutch"}
    )
    # Per entity: 2 country templates, 1 continent (the two-slot one is skipped), 1 language.
    assert len(prompts) == 3 * 4
    paris = {(p.attribute, p.template): p for p in prompts if p.entity == "Paris"}
    assert set(paris) == {("continent", 0), ("country", 0), ("country", 1), ("language", 0)}
    json_style = paris[("country", 1)]
    assert (
        json_style.text == '[{"city": "Tokyo", "country": "Japan"}, {"city": "Paris", "country": "'
    )
    assert json_style.value == "France"
    for prompt in prompts:
        template = HUB_ATTRIBUTE_TO_PROMPTS[prompt.attribute.capitalize()][prompt.template]
        assert prompt.text == template % prompt.entity
        assert prompt.text[prompt.entity_start : prompt.entity_end] == prompt.entity

    tokenised = tokenise_prompts(prompts, tokenizer, bos_token_id=1)
    for item in tokenised:
        prompt, position = item.prompt, item.entity_position
        assert tokenizer.decode(item.tokens[1 : position + 1]) == prompt.text[: prompt.entity_end]
        assert tokenizer.decode(item.tokens[position + 1 :]) == prompt.text[prompt.entity_end :]
        # SAEBench counts the position from the end: the tokens of the template's
        # remainder after "%s", plus one (Gemma's encode adds BOS to the remainder).
        remainder = HUB_ATTRIBUTE_TO_PROMPTS[prompt.attribute.capitalize()][prompt.template]
        remainder = remainder.split("%s")[1]
        from_end = len(tokenizer(remainder, add_special_tokens=False)["input_ids"]) + 1
        assert position == len(item.tokens) - from_end
    city = [t for t in tokenised if t.prompt.entity == "Ho Chi Minh City"]
    last = tokenizer.decode(city[0].tokens[city[0].entity_position])
    assert "Ho Chi Minh City".endswith(last) and len(last) < len("Ho Chi Minh City")
    # The value continues the prompt: with a space after a word, none after a quote.
    by_template = {t.prompt.template: t for t in city if t.prompt.attribute == "country"}
    assert tokenizer.decode(by_template[0].value_tokens) == " Vietnam"
    assert tokenizer.decode(by_template[1].value_tokens) == "Vietnam"


def test_hub_draws_are_seeded_and_unknown_attributes_are_named():
    args = ("city", HUB_ENTITY_ATTRIBUTES, HUB_ATTRIBUTE_TO_PROMPTS, HUB_ATTRIBUTES)
    entities, prompts = hub_prompts(*args, 2, 1, 0)
    assert len(entities) == 2 and len(prompts) == 2 * 3  # one template per attribute
    assert (entities, prompts) == hub_prompts(*args, 2, 1, 0)
    with pytest.raises(RavelDataError, match=r"attributes\.city: \['Population'\]"):
        hub_prompts("city", HUB_ENTITY_ATTRIBUTES, HUB_ATTRIBUTE_TO_PROMPTS,
                    ["Country", "Population"], None, None, 0)  # fmt: skip
    with pytest.raises(RavelDataError, match="ravel_city_entity_attributes.json"):
        hub_prompts("city", {"Paris": "France"}, HUB_ATTRIBUTE_TO_PROMPTS, HUB_ATTRIBUTES,
                    None, None, 0)  # fmt: skip


def _hub_settings(**hub):
    ravel = _config()["ravel"]
    ravel["data"]["source"] = "huggingface"
    ravel["huggingface"].update(attributes={"city": HUB_ATTRIBUTES}, **hub)
    return ravel


def test_hub_source_reads_the_fetched_files_and_checks_them(tmp_path):
    import json

    from saesanity.evals.ravel import load_entities_and_prompts
    from saesanity.evals.ravel_data import HUB_FILE_KINDS, fetch_hub_files

    settings = _hub_settings(entities_per_type=None, templates_per_attribute=None)
    hub = settings["huggingface"]
    # A copy in the Hugging Face cache (its documented layout: snapshots/<commit>) is what
    # an earlier download leaves; offline, snapshot_download finds it there.
    snapshot = tmp_path / "cache/datasets--adamkarvonen--ravel_prompts/snapshots" / hub["revision"]
    snapshot.mkdir(parents=True)
    contents = {"entity_attributes": HUB_ENTITY_ATTRIBUTES,
                "attribute_to_prompts": HUB_ATTRIBUTE_TO_PROMPTS}  # fmt: skip
    for kind in HUB_FILE_KINDS:  # the split files are fetched, not used
        (snapshot / f"ravel_city_{kind}.json").write_text(json.dumps(contents.get(kind, {})))
    provenance = fetch_hub_files(hub, tmp_path)
    assert provenance["commit"] == hub["revision"] and len(provenance["files"]) == 4
    entities, prompts, types = load_entities_and_prompts(tmp_path, settings, provenance)
    assert types == ["city"] and len(entities) == 3 and len(prompts) == 12
    (snapshot / "ravel_city_entity_attributes.json").write_text("{}")
    with pytest.raises(RavelDataError, match="sha256"):
        load_entities_and_prompts(tmp_path, settings, provenance)
    (snapshot / "ravel_city_entity_to_split.json").unlink()
    with pytest.raises(RavelDataError, match="ravel_city_entity_to_split.json"):
        fetch_hub_files(hub, tmp_path)


def test_hub_source_without_the_hub_fails_naming_the_repo_and_the_key(tmp_path):
    from saesanity.evals.ravel_data import fetch_hub_files

    hub = _config()["ravel"]["huggingface"]  # HF_HUB_OFFLINE=1 (conftest), empty cache
    with pytest.raises(
        RavelDataError, match=r"ravel\.data\.source.*adamkarvonen/ravel_prompts.*HF_HUB_OFFLINE"
    ):
        fetch_hub_files(hub, tmp_path)


def test_offline_data_settings_are_unchanged_by_the_hub_option():
    from saesanity.evals.ravel import ravel_data_settings

    ravel = _config()["ravel"]
    offline = ravel_data_settings(ravel)
    assert set(offline) == {"data", "batch_size", "min_entities", "pairs"}
    assert "source" not in offline["data"]  # the params the offline outputs were built with
    hub = ravel_data_settings(_hub_settings())
    assert hub["data"]["source"] == "huggingface" and hub["huggingface"]["repo"]


def test_hub_config_is_checked():
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from saesanity.evals.ravel import RavelConfigError, check_ravel_config

    schema = str(Path(__file__).resolve().parents[1] / "schemas/config.schema.yaml")
    config = _config()
    config["ravel"] = _hub_settings()
    validate(config, schema)
    check_ravel_config(config)
    for bad, named in [
        ({"data": {**config["ravel"]["data"], "source": "hub"}}, "hub"),
        ({"huggingface": {**config["ravel"]["huggingface"], "split": "train"}}, "split"),
        ({"huggingface": {**config["ravel"]["huggingface"], "attributes": {"city": ["Country"]}}},
         "Country"),
    ]:  # fmt: skip
        with pytest.raises(WorkflowError, match=named):
            validate({**config, "ravel": {**config["ravel"], **bad}}, schema)
    config["ravel"]["huggingface"]["attributes"] = {"city": ["Country", "country"]}
    with pytest.raises(RavelConfigError, match="attributes.city"):
        check_ravel_config(config)
