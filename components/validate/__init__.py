"""The validate component."""
