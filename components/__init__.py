"""KFP v2 components of the training pipeline: one folder each, thin over `shipyard.steps`."""
