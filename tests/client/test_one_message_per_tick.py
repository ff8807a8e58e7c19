"""GameClient at its defaults: one InputFrame per tick with the ack folded in, compact
envelope, inputs timed to the server tick (a real server behind the link conditioner)."""

from __future__ import annotations

import asyncio

import msgpack
import pytest

from astranet.client import ClientWorld
from tests.client.conftest import Net

FRAME_S = 1 / 60


def sent_message_types(client: object) -> list[str]:
    """Wrap the client's protocol so every message it sends is recorded by type."""
    conn = client.conn  # type: ignore[attr-defined]
    sent: list[str] = []
    original = conn.data_to_send

    def recording() -> list[bytes]:
        writes = original()
        for data in writes:
            message = msgpack.unpackb(data)
            sent.append(message["t"] + ("+ack" if message.get("ack") is not None else ""))
        return writes

    conn.data_to_send = recording
    return sent


async def frames_for(world: ClientWorld, seconds: float) -> None:
    async with asyncio.timeout(seconds + 5):
        end_ms = world.link.now_ms() + seconds * 1000
        while world.link.now_ms() < end_ms:
            world.step()
            await asyncio.sleep(FRAME_S)  # frame pacing, not synchronisation


@pytest.mark.timeout(30)
async def test_inputs_carry_the_acks_and_are_timed_to_the_tick(net: Net) -> None:
    await net.start(latency_ms=2.0)
    client, world = await net.client()
    assert client.conn.compact_granted is not None  # Hello asked for the compact envelope
    sent = sent_message_types(client)
    await frames_for(world, 3.0)
    inputs = sent.count("InputFrame+ack") + sent.count("InputFrame")
    assert inputs >= 60  # ~30 a second once the first snapshot arrived
    assert sent.count("Ack") <= 2  # acks ride on inputs (a lone one only while none is sent)
    # An input carries no ack only when no snapshot was applied since the previous one.
    assert sent.count("InputFrame+ack") >= 0.8 * inputs
    pacer = client.pacer
    assert pacer is not None and pacer.synced
    print(f"pacer: {pacer.hits} hits, {pacer.misses} misses, lead {pacer.lead_ms:.1f} ms")
    # Most inputs were applied by the very tick they were aimed at (timing: a loaded machine
    # delays the server's reads, so the margin is generous).
    assert pacer.hits > pacer.misses


@pytest.mark.timeout(30)
async def test_a_client_that_sends_no_input_still_acks_alone(net: Net) -> None:
    await net.start()
    client, _ = await net.client(input_pacing=False)
    sent = sent_message_types(client)
    async with asyncio.timeout(10):
        while sent.count("Ack") < 5:  # no world.step(): the game acks, never sends input
            for received in client.drain_snapshots():
                client.ack(received.snapshot_id)
            await asyncio.sleep(FRAME_S)
    assert not any(t.startswith("InputFrame") for t in sent)
    assert client.conn.last_acked_snapshot_id is not None
