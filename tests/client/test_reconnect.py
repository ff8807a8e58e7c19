"""Reconnection: drops through the link conditioner, resume with the token, give up cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from astranet.client import ClientWorld, EventKind, ReconnectGaveUp
from tests.client.conftest import Net

FRAME_S = 1 / 60


async def frames_until(world: ClientWorld, done: Callable[[], bool], timeout_s: float) -> None:
    """Run the game's frame loop until ``done()`` (bounded: TimeoutError fails the test)."""
    async with asyncio.timeout(timeout_s):
        while not done():
            world.step()
            await asyncio.sleep(FRAME_S)  # frame pacing, not synchronisation


async def frames_for(world: ClientWorld, seconds: float) -> None:
    end_ms = world.link.now_ms() + seconds * 1000
    await frames_until(world, lambda: world.link.now_ms() >= end_ms, seconds + 1)


@pytest.mark.timeout(30)
async def test_block_then_unblock_resumes_within_two_seconds(net: Net):
    await net.start(latency_ms=20.0, jitter_ms=5.0)
    client, world = await net.client()
    stats = world.reconciliation.stats
    await frames_until(world, lambda: stats.compared >= 10, 5)
    entity, player = world.local.net_id, client.conn.player_id
    mark = client.event_count

    net.conditioner.block()  # the network goes down: resets, and refuses new connections
    async with asyncio.timeout(5):
        await client.wait_for(EventKind.DISCONNECTED, after=mark)
    sent_before = world.prediction.inputs_sent
    await frames_for(world, 1.0)  # a one-second outage, the game loop still running
    assert world.prediction.inputs_sent == sent_before  # nothing predicted while offline
    assert client.stats.inputs_refused > 0

    unblocked_ms = client.now_ms()
    net.conditioner.unblock()
    compared_before = stats.compared
    async with asyncio.timeout(5):
        reconnected = await client.wait_for(EventKind.RECONNECTED, after=mark)
    # Resumed = back in the room and predicting again: fresh inputs compared with the server.
    await frames_until(world, lambda: stats.compared >= compared_before + 5, 5)
    resumed_ms = client.now_ms() - unblocked_ms
    assert resumed_ms <= 2000.0, resumed_ms

    assert reconnected.entity == entity and reconnected.player_id == player
    assert reconnected.downtime_s >= 1.0
    assert client.stats.reconnects == 1
    assert world.local.net_id == entity and world.local.ready
    assert stats.max_error == 0.0  # prediction restarted from the full snapshot, exactly
    kinds = [event.kind for event in client.drain_events()]
    assert kinds.index(EventKind.DISCONNECTED) < kinds.index(EventKind.RECONNECTING)
    assert kinds.index(EventKind.RECONNECTING) < kinds.index(EventKind.RECONNECTED)


@pytest.mark.timeout(30)
async def test_severed_connection_is_resumed_at_once(net: Net):
    await net.start(latency_ms=10.0)
    client, world = await net.client()
    await frames_until(world, lambda: world.reconciliation.stats.compared >= 5, 5)
    mark = client.event_count
    severed_ms = client.now_ms()
    await net.conditioner.sever()
    async with asyncio.timeout(5):
        event = await client.wait_for(EventKind.RECONNECTED, after=mark)
    assert client.now_ms() - severed_ms <= 2000.0
    assert event.entity == world.local.net_id
    compared = world.reconciliation.stats.compared
    await frames_until(world, lambda: world.reconciliation.stats.compared >= compared + 5, 5)
    assert client.error is None


@pytest.mark.timeout(30)
async def test_gives_up_after_the_deadline_with_a_clear_error(net: Net):
    await net.start()
    client, world = await net.client(give_up_after_s=1.0)
    await frames_until(world, lambda: world.receive.applied_total >= 3, 5)
    mark = client.event_count
    net.conditioner.block()
    async with asyncio.timeout(5):
        gave_up = await client.wait_for(EventKind.GAVE_UP, after=mark)
        await client.wait_closed()
    assert isinstance(client.error, ReconnectGaveUp)
    assert "gave up reconnecting after 1.0 s" in str(client.error)
    assert "gave up" in gave_up.detail
    assert client.send_input(b"\x00\x00") is None


@pytest.mark.timeout(30)
async def test_kick_is_final_not_retried(net: Net):
    await net.start()
    client, world = await net.client(input_source=lambda: b"\x7f\x7f")  # impossible speed
    async with asyncio.timeout(15):
        while client.error is None:
            world.step()
            await asyncio.sleep(FRAME_S)  # frame pacing
    assert client.error.code == 1008
    assert client.stats.reconnects == 0
    assert "movement sanity" in client.error.reason


@pytest.mark.timeout(30)
async def test_silence_is_detected_one_timeout_after_the_last_message_not_before(net: Net):
    """The read loop arms one timer per silence window (not one per message): a server that
    keeps talking across several windows is never taken for silent, and a silent one is
    detected silence_timeout_s after its last message."""
    await net.start()
    client, world = await net.client(silence_timeout_s=0.5, reconnect=False)
    mark = client.event_count
    await frames_for(world, 1.8)  # over three windows of a server sending 30 snapshots/s
    assert client.event_count == mark  # no DISCONNECTED/CLOSED
    stalled_ms = client.now_ms()
    net.conditioner.stall("downstream", 5000)
    async with asyncio.timeout(5):
        closed = await client.wait_for(EventKind.CLOSED, after=mark)
    silent_ms = client.now_ms() - stalled_ms
    assert closed.detail == "1006 server silent for 0.5 s"
    assert 400.0 <= silent_ms <= 1000.0, silent_ms  # last snapshot <= 1 period before the stall
