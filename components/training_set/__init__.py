"""The training_set component."""
