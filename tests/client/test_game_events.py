"""Reliable game events end to end: a real server emits one event per tick; the client world
surfaces each exactly once and in order -- also across a dropped connection and Resume."""

from __future__ import annotations

import asyncio
import struct

import pytest

from astranet.client import ClientWorld, EventKind
from astranet.examples.dots import Dots
from astranet.game import SimContext
from astranet.replication.events import GameEvent
from astranet.systems import Stage, add_system
from tests.client.conftest import Net

FRAME_S = 1 / 60


class TickAnnouncer:
    """A server system: every tick, one "tick" event to the whole room (data = the tick)."""

    def process(self, sim: SimContext) -> None:
        sim.events.emit("tick", struct.pack("<Q", sim.tick))


class AnnouncingDots(Dots):
    def setup(self, sim: SimContext) -> None:
        super().setup(sim)
        add_system(TickAnnouncer(), Stage.SIMULATE)  # type: ignore[arg-type]


async def frames_collecting(
    world: ClientWorld, got: list[GameEvent], until: int, timeout_s: float
) -> None:
    async with asyncio.timeout(timeout_s):
        while len(got) < until:
            world.step()
            got.extend(world.events)
            await asyncio.sleep(FRAME_S)  # frame pacing, not synchronisation


def _check(got: list[GameEvent]) -> None:
    seqs = [e.seq for e in got]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # once each, in order, no gap
    ticks = [struct.unpack("<Q", e.data)[0] for e in got]
    assert ticks == sorted(ticks) and len(set(ticks)) == len(ticks)
    assert all(e.server_tick == t for e, t in zip(got, ticks, strict=True))


@pytest.mark.timeout(30)
async def test_events_are_surfaced_once_in_order_and_survive_resume(net: Net) -> None:
    await net.start(AnnouncingDots(), latency_ms=10.0)
    client, world = await net.client()
    assert client.conn.events_granted is True
    got: list[GameEvent] = []
    await frames_collecting(world, got, 20, 5)
    _check(got)

    mark = client.event_count
    net.conditioner.block()  # the link goes down for half a second
    async with asyncio.timeout(5):
        await client.wait_for(EventKind.DISCONNECTED, after=mark)
    for _ in range(30):
        world.step()
        got.extend(world.events)
        await asyncio.sleep(FRAME_S)
    net.conditioner.unblock()
    async with asyncio.timeout(5):
        await client.wait_for(EventKind.RECONNECTED, after=mark)
    await frames_collecting(world, got, len(got) + 40, 5)
    _check(got)  # the ticks emitted while offline arrived after the resume, none twice
