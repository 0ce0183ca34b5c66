"""Where activations come from: the synthetic generator, the language model, the
corpus and the on-disk activation store."""
