"""platelab.engine."""
