"""platelab.eval."""
