"""astranet: authoritative real-time multiplayer for esper ECS games.

Packages:
    astranet.net          sans-I/O wire protocol (messages, signing, connections) and asyncio edges
    astranet.ecs          replicated component declarations and the numpy column store
    astranet.replication  snapshots, delta codec, prediction/interpolation histories
    astranet.systems      esper processors a game adds to its world
"""

from astranet.errors import AstranetError

__version__ = "0.1.0"
PROTOCOL_VERSION = 1

__all__ = ["PROTOCOL_VERSION", "AstranetError", "__version__"]
