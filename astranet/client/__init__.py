"""astranet.client: connect to an astranet server and run the client netcode.

    events      ClientOptions, ClientEvent / EventKind, ClientStats, ConnectFailed,
                ReconnectGaveUp (the small types game code handles)
    connection  GameClient: asyncio shell of the sans-I/O ClientConnection; pings, clock sync,
                reconnection with backoff (events: ClientEvent / EventKind)
    threaded    ThreadedClient: the same on a background thread, for non-asyncio game loops
    world       ClientWorld: an esper world with the client systems (receive, reconcile,
                predict, interpolate) in Stage order; run_frames() paces it on asyncio
    demo        the ``astranet-client`` bot (``python -m astranet.client.demo``)

Guide: docs/client.md.
"""

from astranet.client.connection import MAX_EVENTS, MAX_INBOX_SNAPSHOTS, GameClient
from astranet.client.events import (
    ClientEvent,
    ClientOptions,
    ClientStats,
    ConnectFailed,
    EventKind,
    ReconnectGaveUp,
)
from astranet.client.threaded import ThreadedClient
from astranet.client.world import ClientWorld, FrameLink, run_frames

__all__ = [
    "MAX_EVENTS",
    "MAX_INBOX_SNAPSHOTS",
    "ClientEvent",
    "ClientOptions",
    "ClientStats",
    "ClientWorld",
    "ConnectFailed",
    "EventKind",
    "FrameLink",
    "GameClient",
    "ReconnectGaveUp",
    "ThreadedClient",
    "run_frames",
]
