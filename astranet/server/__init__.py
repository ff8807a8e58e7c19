"""Server infrastructure: configuration, matchmaking, the tick clock, metrics, HTTP side port.

Each module is an independent component with no knowledge of the others' internals; the
WebSocket game server (rooms, connections) assembles them. Only ``http`` and the asyncio half of
``scheduler`` touch the event loop; ``config`` and ``matchmaking`` are pure and synchronous.
"""

from astranet.server.config import (
    DEFAULT_GAME,
    ServerConfig,
    load_config_or_exit,
    parse_config,
)
from astranet.server.http import HttpSidePort
from astranet.server.matchmaking import Matchmaker, RoomInfo, Seat
from astranet.server.metrics import ServerMetrics
from astranet.server.scheduler import TickClock, TickLoop, TickPlan, TickStats

__all__ = [
    "DEFAULT_GAME",
    "HttpSidePort",
    "Matchmaker",
    "RoomInfo",
    "Seat",
    "ServerConfig",
    "ServerMetrics",
    "TickClock",
    "TickLoop",
    "TickPlan",
    "TickStats",
    "load_config_or_exit",
    "parse_config",
]
