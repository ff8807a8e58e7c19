"""Fixtures for end-to-end server tests: an in-process GameServer and a real WebSocket client.

Everything runs on 127.0.0.1 with port 0. ``serve`` starts a :class:`GameServer` with extra
flags (and optionally another game) and shuts it down after the test; :class:`WireClient` is a
real ``websockets`` client that speaks astranet messages (``astranet.net.messages``) and signs
inputs like any client must. Waits are on messages and closes, each bounded by
``RECV_TIMEOUT_S`` so a missing message fails the test instead of hanging it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
import pytest

from astranet.ecs import Schema
from astranet.game import Game
from astranet.net.messages import Snapshot
from astranet.replication import Replica
from astranet.testing import RECV_TIMEOUT_S, TestClient, TestServer, metric_value
from astranet.testing.server import _fetch as fetch

__all__ = [
    "RECV_TIMEOUT_S",
    "DecodedView",
    "Running",
    "StartServer",
    "WireClient",
    "fetch",
    "metric_value",
    "position_after",
]

# The project's tests use the public harness (astranet.testing) under their historic names.
WireClient = TestClient
Running = TestServer
StartServer = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def serve() -> AsyncIterator[StartServer]:
    """``running = await serve("--sig-failure-policy", "warn", game=...)``; shut down after.

    Its clients do not decode or ack (``decode=False``): these tests speak the raw protocol and
    a client that never acks gets full snapshots.
    """
    started: list[TestServer] = []

    async def start(*flags: str, game: Game | str = "astranet.examples.dots:game") -> TestServer:
        server = TestServer(game, *flags, decode=False)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.close()


@pytest.fixture
async def running(serve: StartServer) -> TestServer:
    """A default server (dots game, kick policy)."""
    return await serve()


class DecodedView:
    """A client's decoded copy of its room (astranet's Replica) fed from a WireClient."""

    def __init__(self, schema: Schema) -> None:
        self.replica = Replica(schema)

    def apply(self, snapshot: Snapshot) -> None:
        self.replica.apply(
            snapshot.id,
            snapshot.base_id,
            snapshot.payload,
            snapshot.compressed,
            snapshot.server_tick,
        )

    def position(self, net_id: int) -> np.ndarray:
        store = self.replica.store
        row = store.rows([net_id])
        return np.array(store["Body.pos"][row][0], dtype=np.float64)


async def position_after(
    client: WireClient,
    view: DecodedView,
    net_id: int,
    predicate: Callable[[Snapshot], bool] = lambda s: True,
) -> np.ndarray:
    """Decode snapshots (never acking: each is full) until ``predicate``; the avatar's pos."""
    snapshot = await client.snapshot_where(predicate)
    view.apply(snapshot)
    return view.position(net_id)
