"""platelab: a PyTorch research sandbox for license-plate localisation."""

__version__ = "0.1.0"
