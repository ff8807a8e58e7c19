"""Fixtures: in-process GameServers with real SQLite persistence on a temporary file.

``await durable.start(db, *flags)`` starts a server on 127.0.0.1 (ports 0) persisting to ``db``;
``await durable.stop(server)`` shuts one down gracefully mid-test (to restart on the same file).
Whatever is still running at the end of the test is shut down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from astranet.server.app import GameServer
from astranet.server.persistence import open_sqlite_persistence
from astranet.testing import TestServer


class Durable:
    def __init__(self) -> None:
        self.running: list[GameServer] = []

    async def start(self, db: Path, *flags: str, checkpoint_interval: float = 0.1) -> GameServer:
        persistence = await open_sqlite_persistence(db, checkpoint_interval=checkpoint_interval)
        test = TestServer(
            "astranet.examples.dots:game", "--db", str(db), *flags, persistence=persistence
        )
        try:
            await test.start()
        except BaseException:
            await persistence.close()
            raise
        self.running.append(test.running)
        return test.running

    async def stop(self, server: GameServer) -> None:
        self.running.remove(server)
        await server.shutdown()


@pytest.fixture
async def durable() -> AsyncIterator[Durable]:
    servers = Durable()
    yield servers
    for server in list(servers.running):
        await servers.stop(server)


def url(server: GameServer) -> str:
    return f"ws://127.0.0.1:{server.ws_port}"
