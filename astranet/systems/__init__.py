"""astranet.systems."""
