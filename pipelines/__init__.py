"""KFP v2 pipelines; each has its compiled YAML committed next to it."""
