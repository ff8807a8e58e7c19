"""astranet.ecs."""
