"""Jobs: the YAML manifest (what to generate) and the plan (samples, seeds, lengths, windows per level)."""
