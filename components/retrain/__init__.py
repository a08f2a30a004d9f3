"""The retrain component (continuous training on a cluster: submit the training pipeline to KFP)."""
