"""Fixtures for client tests: an in-process GameServer behind a LinkConditioner, and clients.

Everything is on 127.0.0.1 with port 0. ``Net.start(game, latency_ms, jitter_ms)`` runs the
server and a conditioner with that one-way latency and jitter in each direction; clients
connect to the conditioner. ``Net.client()`` returns a joined GameClient and its ClientWorld
(plain dots prediction unless told otherwise). Teardown closes clients, conditioner, server.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable

import esper
import pytest

from astranet.client import ClientOptions, ClientWorld, GameClient
from astranet.client.demo import BotInput
from astranet.examples.dots import ARENA, Dots, encode_input, snap
from astranet.game import Game, SimContext, load_game
from astranet.net.linkconditioner import LinkConditioner
from astranet.server.app import GameServer
from astranet.testing import LinkProfile, TestServer

DOTS = load_game("astranet.examples.dots:game")
WALL_X = 10.0  # the server-only wall of WalledDots (players spawn at the origin)


class WalledDots(Dots):
    """dots, plus a wall at x = WALL_X that only the server knows about: the client predicts
    with plain dots, so the server corrects it when it walks into the wall."""

    def spawn_player(self, sim: SimContext, player_id: str) -> int:
        net_id = super().spawn_player(sim, player_id)
        sim.store["Body.pos"][sim.store.rows([net_id])] = 0.0  # 30 inputs from the wall
        return net_id

    def apply_input(self, sim: SimContext, net_id: int, command: tuple[int, int]) -> None:
        super().apply_input(sim, net_id, command)
        rows = sim.store.rows([net_id])
        pos = sim.store["Body.pos"]
        pos[rows, 0] = snap(min(float(pos[rows, 0][0]), WALL_X))


class Net:
    """A TestServer behind a LinkConditioner, and GameClients (with ClientWorlds) through it."""

    def __init__(self) -> None:
        self.test: TestServer | None = None
        self.clients: list[tuple[GameClient, ClientWorld]] = []

    async def start(
        self, game: Game = DOTS, latency_ms: float = 0.0, jitter_ms: float = 0.0, seed: int = 7
    ) -> None:
        profile = LinkProfile(latency_ms=latency_ms, jitter_ms=jitter_ms)
        self.test = await TestServer(game, link=profile, link_seed=seed).start()

    @property
    def server(self) -> GameServer:
        assert self.test is not None
        return self.test.running

    @property
    def url(self) -> str:
        assert self.test is not None
        return self.test.url

    @property
    def conditioner(self) -> LinkConditioner:
        assert self.test is not None and self.test.conditioner is not None
        return self.test.conditioner

    async def client(
        self, input_source: Callable[[], bytes] | None = None, *, seed: int = 1, **options: object
    ) -> tuple[GameClient, ClientWorld]:
        client = GameClient(ClientOptions(url=self.url, seed=seed, **options))  # type: ignore[arg-type]
        accepted = await client.connect()
        world = ClientWorld(
            DOTS,
            client,
            input_source or BotInput(encode_input, seed=seed),
            tick_hz=accepted.tick_hz,
        )
        self.clients.append((client, world))
        return client, world

    async def close(self) -> None:
        for client, world in self.clients:
            await client.close()
            world.close()
        if self.test is not None:
            await self.test.close()
        esper.switch_world("default")


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    harness = Net()
    try:
        yield harness
    finally:
        await harness.close()


def heading_input(angle: Callable[[], float]) -> Callable[[], bytes]:
    """An input source steering at ``angle()`` radians, at 98 % speed."""
    return lambda: encode_input(0.98 * math.cos(angle()), 0.98 * math.sin(angle()))


__all__ = ["ARENA", "DOTS", "WALL_X", "Net", "WalledDots", "heading_input"]
