"""The collect component (monitoring: the request-log window with the labels that arrived)."""
