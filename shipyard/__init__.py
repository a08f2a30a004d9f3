"""Shipyard: continuous training of a ticket-routing model on KFP v2, Feast and KServe."""

__version__ = "0.1.0"
