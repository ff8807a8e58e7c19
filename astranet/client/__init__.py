"""astranet.client: connect to an astranet server and run the client netcode.

    events      ClientOptions, ClientEvent / EventKind, ClientStats, ConnectFailed,
                ReconnectGaveUp (the small types game code handles); region_from_env
                (the AW_REGION default), server_error (a refusal as its exception)
    connection  GameClient: asyncio shell of the sans-I/O ClientConnection; pings, clock sync,
                reconnection with backoff (events: ClientEvent / EventKind)
    threaded    ThreadedClient: the same on a background thread, for non-asyncio game loops
    world       ClientWorld: an esper world with the client systems (receive, reconcile,
                predict, interpolate) in Stage order; run_frames() paces it on asyncio
    demo        the ``astranet-client`` bot (``python -m astranet.client.demo``)

Guide: docs/client.md.
"""

# events holds the small types game code handles: re-exported whole from events.__all__, so
# those names are listed once, where they are defined; the rest is picked by name.
from astranet.client import events
from astranet.client.connection import MAX_EVENTS, MAX_INBOX_SNAPSHOTS, GameClient
from astranet.client.events import *  # noqa: F403
from astranet.client.threaded import ThreadedClient
from astranet.client.world import ClientWorld, FrameLink, run_frames

__all__ = [
    *events.__all__,
    "MAX_EVENTS",
    "MAX_INBOX_SNAPSHOTS",
    "ClientWorld",
    "FrameLink",
    "GameClient",
    "ThreadedClient",
    "run_frames",
]
