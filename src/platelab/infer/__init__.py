"""platelab.infer."""
