"""astranet.net."""
