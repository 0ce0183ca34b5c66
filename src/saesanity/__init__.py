"""saesanity: sanity checks for sparse autoencoders (arXiv 2602.14111) as a workflow."""

__version__ = "0.1.0"
