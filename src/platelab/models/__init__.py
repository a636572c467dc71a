"""platelab.models."""
