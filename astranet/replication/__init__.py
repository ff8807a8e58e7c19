"""astranet.replication."""
