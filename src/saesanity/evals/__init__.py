"""What is measured on a checkpoint: recovery and reconstruction metrics, sparse
probing, RAVEL, and AutoInterp with its judges."""
