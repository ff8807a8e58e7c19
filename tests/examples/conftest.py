"""Fixtures for the coop example: a room's esper world driven the way the server drives it.

:class:`CoopWorld` owns one esper world and one ColumnStore, runs ``Coop.setup`` in it, and
steps it like ``astranet.server.room.Room`` does (check_input -> apply_input or STAND_STILL,
then every processor), without sockets or replication. ``scripted_command`` is a deterministic
bot: it circles, aims at the nearest drone and fires whenever its weapon is ready. ``server``
is an in-process GameServer serving the coop game on 127.0.0.1 (free ports).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator, Callable, Iterator

import esper
import numpy as np
import pytest

from astranet.ecs import ColumnStore, WorldSwitch
from astranet.examples.coop import DRONE, TEAM, Command, fire_ready, game
from astranet.examples.coop.input import STAND_STILL, aim_code
from astranet.examples.coop.sim import nearest
from astranet.game import SimContext
from astranet.server.app import GameServer
from astranet.testing import TestServer

_world_ids = itertools.count()


class CoopWorld:
    """One coop room without a server: its own esper world, store and SimContext."""

    def __init__(self, room_id: str = "TESTROOM", *, authoritative: bool = True) -> None:
        self.world = f"coop-test-{next(_world_ids)}"
        self.sim = SimContext(ColumnStore(game.schema), 0, 1 / 30, room_id, authoritative)
        self.refusals: list[tuple[int, str]] = []
        with self.active():
            game.setup(self.sim)

    @property
    def store(self) -> ColumnStore:
        return self.sim.store

    def active(self) -> WorldSwitch:
        return WorldSwitch(self.world)

    def join(self, player_id: str) -> int:
        with self.active():
            return game.spawn_player(self.sim, player_id)

    def step(self, commands: dict[int, Command] | None = None) -> None:
        """One server tick: each player's command (sanity-checked), then the systems."""
        self.sim.tick += 1
        with self.active():
            for net_id, command in (commands or {}).items():
                reason = game.check_input(self.sim, net_id, command)
                if reason is not None:
                    self.refusals.append((net_id, reason))
                    command = STAND_STILL
                game.apply_input(self.sim, net_id, command)
            esper.process(self.sim)

    def close(self) -> None:
        if esper.current_world == self.world:
            esper.switch_world("default")
        if self.world in esper.list_worlds():
            esper.delete_world(self.world)

    # -- views used by assertions ------------------------------------------------------------

    def rows_of(self, kind: int) -> np.ndarray:
        return np.flatnonzero(self.store["Body.kind"] == kind)

    def team(self) -> tuple[int, int]:
        row = self.rows_of(TEAM)[0]
        return int(self.store["Team.score"][row]), int(self.store["Team.wave"][row])

    def snapshot(self) -> dict[str, np.ndarray]:
        """Every column plus the net ids, copied (for bit-exact comparisons)."""
        state = {f.name: self.store[f.name].copy() for f in self.store.schema.fields}
        state["net_ids"] = np.asarray(self.store.net_ids).copy()
        return state


def scripted_command(world: CoopWorld, net_id: int, index: int) -> Command:
    """Bot ``index``: circle the centre, aim at the nearest drone, fire when ready."""
    store = world.store
    row = store.rows([net_id])[0]
    pos = store["Body.pos"][row].astype(np.float64)
    phase = world.sim.tick / 40.0 + index * math.pi / 2
    move_x, move_y = int(100 * math.cos(phase)), int(100 * math.sin(phase))
    target = nearest(store["Body.pos"][world.rows_of(DRONE)], pos)
    aim = 0 if target is None else aim_code(math.atan2(*(target - pos)[::-1]))
    return Command(move_x, move_y, aim, fire_ready(store, net_id))


@pytest.fixture
def make_world() -> Iterator[Callable[..., CoopWorld]]:
    """Factory of CoopWorlds, all closed after the test."""
    made: list[CoopWorld] = []

    def make(room_id: str = "TESTROOM", *, authoritative: bool = True) -> CoopWorld:
        world = CoopWorld(room_id, authoritative=authoritative)
        made.append(world)
        return world

    yield make
    for world in made:
        world.close()


@pytest.fixture
async def server() -> AsyncIterator[GameServer]:
    """An in-process GameServer serving the coop game on 127.0.0.1, free ports."""
    async with TestServer(game) as running:
        yield running.running


def play(world: CoopWorld, players: list[int], ticks: int) -> None:
    """Run ``ticks`` ticks with every player scripted."""
    for _ in range(ticks):
        world.step({net_id: scripted_command(world, net_id, i) for i, net_id in enumerate(players)})
