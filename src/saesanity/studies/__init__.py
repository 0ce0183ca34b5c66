"""The studies: which runs exist and how each trains (runs.py), and per study its
training, evaluation and tables (synthetic, length, real, sanity)."""
