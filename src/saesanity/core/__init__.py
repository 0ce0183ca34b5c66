"""The SAE and one module per concern of training it: the architectures (sae.py), the
sparse kernels, the one trainer, the data protocol, checkpoints and devices."""
