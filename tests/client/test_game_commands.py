"""Game commands end to end: a signed Command reaches Game.on_command in the tick; the game
answers with an event; refusals and floods come back as astranet.command_refused events."""

from __future__ import annotations

import asyncio
import struct

import pytest

from astranet.client import ClientWorld
from astranet.examples.dots import Dots
from astranet.game import SimContext
from astranet.replication.events import GameEvent
from astranet.systems.events import COMMAND_REFUSED_EVENT, MAX_QUEUED_COMMANDS
from tests.client.conftest import Net

FRAME_S = 1 / 60


class ChatDots(Dots):
    """Dots with chat: a "say" command is echoed to the whole room; "shout" is refused."""

    def on_command(
        self, sim: SimContext, player_id: str, net_id: int, command_type: str, data: bytes
    ) -> str | None:
        if command_type != "say":
            return f"unknown command {command_type}"
        sim.events.emit("said", player_id.encode() + b":" + data)
        return None


async def collect(world: ClientWorld, got: list[GameEvent], done, timeout_s: float) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout_s):
        while not done():
            world.step()
            got.extend(world.events)
            await asyncio.sleep(FRAME_S)  # frame pacing, not synchronisation


@pytest.mark.timeout(30)
async def test_commands_are_validated_by_the_game_and_answered_by_events(net: Net) -> None:
    await net.start(ChatDots(), latency_ms=5.0)
    (alice, alice_world), (_, bob_world) = await net.client(), await net.client()
    assert alice.send_command("say", b"hello") == 1
    assert alice.send_command("shout", b"HELLO") == 2
    heard: list[GameEvent] = []
    mine: list[GameEvent] = []
    await collect(bob_world, heard, lambda: any(e.type == "said" for e in heard), 5)
    await collect(alice_world, mine, lambda: any(e.type == COMMAND_REFUSED_EVENT for e in mine), 5)
    said = next(e for e in heard if e.type == "said")
    assert said.data == alice.conn.player_id.encode() + b":hello"
    refused = next(e for e in mine if e.type == COMMAND_REFUSED_EVENT)
    assert struct.unpack("<I", refused.data[:4])[0] == 2
    assert b"unknown command shout" in refused.data
    assert net.test is not None  # the refusal is counted where operators look: /metrics
    assert await net.test.metric("astranet_commands_refused_total") == 1


@pytest.mark.timeout(30)
async def test_a_command_flood_is_rate_limited_not_queued(net: Net) -> None:
    await net.start(ChatDots(), latency_ms=5.0)
    client, world = await net.client()
    flood = 3 * MAX_QUEUED_COMMANDS
    for k in range(flood):
        assert client.send_command("say", str(k).encode()) is not None
    got: list[GameEvent] = []
    await collect(world, got, lambda: sum(e.type == "said" for e in got) >= MAX_QUEUED_COMMANDS, 10)
    await collect(world, got, lambda: any(e.type == COMMAND_REFUSED_EVENT for e in got), 5)
    said = [e.data.split(b":", 1)[1] for e in got if e.type == "said"]
    assert said == [str(k).encode() for k in range(len(said))]  # in order, none twice
    assert len(said) == MAX_QUEUED_COMMANDS  # the rest were refused, not queued
    refused = [e for e in got if e.type == COMMAND_REFUSED_EVENT]
    assert b"rate" in refused[0].data
