"""platelab.data.synth."""
