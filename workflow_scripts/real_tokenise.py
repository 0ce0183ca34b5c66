"""Snakemake script: cut one corpus split into fixed token windows (BOS first)."""

import logging

from saesanity.sources.activation_store import save_windows, tokenise_windows
from saesanity.sources.corpus import iter_documents
from saesanity.sources.language_model import ModelSpec, load_tokenizer
from saesanity.studies.runs import setup_logging

setup_logging(snakemake.log[0])
spec = ModelSpec(**snakemake.params.model)
tokenizer = load_tokenizer(spec)
texts = (doc["text"] for doc in iter_documents(snakemake.input.corpus, snakemake.wildcards.split))
windows = tokenise_windows(
    texts,
    tokenizer,
    context=spec.context,
    bos_token_id=tokenizer.bos_token_id,
    max_windows=int(snakemake.params.windows),
    separator_token_id=tokenizer.eos_token_id,
)
if len(windows) < int(snakemake.params.windows):
    logging.warning(
        "split %s: the corpus gave %d windows of the %d asked for",
        snakemake.wildcards.split,
        len(windows),
        snakemake.params.windows,
    )
save_windows(windows, snakemake.output.windows)
