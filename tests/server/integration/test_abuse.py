"""WIRE rules 5 and 6 over real sockets: rate limits, malformed input, size limit, isolation.

The isolation test measures a victim's snapshot inter-arrival times while three neighbours in
its room flood garbage, *against a control*: quiet and flooded phases alternate, so whatever
else loads this shared 2-core machine (a full test suite) lands on both alike, and only the
flood's own effect is compared. Bound: the flooded p99 gap at most ``2 tick periods`` above the
quiet one (what one late tick can cost: the scheduler's late/skip rule), and the flooded mean
rate within 25 % of the quiet one. A server that let a flood stall the tick (a blocking decode,
an unbounded queue) misses it by far.
"""

from __future__ import annotations

import asyncio

import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from astranet.examples.dots import encode_input
from astranet.net.messages import ErrorMessage, Ping, Pong, RateLimited, Snapshot

from .conftest import Running, WireClient, metric_value

pytestmark = pytest.mark.timeout(30)

TICK_S = 1 / 30
FLOOD_EXTRA_GAP_S = 2 * TICK_S  # flooded p99 gap minus quiet p99 gap, at most
FLOOD_ROUNDS, PHASE_SNAPSHOTS = 3, 20  # 3 x (quiet, flood) phases of 20 snapshots: ~4 s


async def _still_answers(client: WireClient, nonce: int) -> None:
    await client.send(Ping(nonce, 0))
    pong = await client.expect(Pong)
    assert pong.nonce == nonce and client.ws.close_code is None


@pytest.mark.slow
async def test_well_behaved_client_is_never_rate_limited(running: Running) -> None:
    client = await running.joined_client()
    # Paced by the server's own snapshots (30 Hz): one input and one ack per snapshot and a
    # ping every 15th, i.e. 30 inputs + 30 acks + 2 pings a second, for 3 seconds.
    for n in range(90):
        message = await client.recv()
        assert not isinstance(message, (RateLimited, ErrorMessage)), message
        if isinstance(message, Snapshot):
            await client.send_input(encode_input(0.5, 0.5))
            await client.ack(message.id)
            if n % 15 == 0:
                await client.send(Ping(n, n))
    assert metric_value(await running.metrics(), "astranet_rate_limited_messages_total") == 0
    assert client.ws.close_code is None


async def test_flood_is_rate_limited_then_closed_1008(running: Running) -> None:
    client = await running.joined_client()
    limited = 0

    async def read() -> None:
        nonlocal limited
        while True:
            if isinstance(await client.recv(), RateLimited):
                limited += 1

    reader = asyncio.create_task(read())
    try:
        for n in range(5000):
            await client.send(Ping(n, n))
            if n % 50 == 0:
                await asyncio.sleep(0)  # let the reader see replies as they come
    except ConnectionClosed:
        pass
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(reader, 5)
    assert limited >= 1
    assert (client.ws.close_code, client.ws.close_reason) == (1008, "rate limit exceeded")
    metrics = await running.metrics()
    assert metric_value(metrics, "astranet_kicks_total", reason="rate_limited") == 1
    assert metric_value(metrics, "astranet_rate_limited_messages_total") > 100


MALFORMED = {
    "undecodable": b"\xc1",
    "non-map": msgpack.packb([1, 2, 3]),
    "missing-field": msgpack.packb({"t": "Ping", "nonce": 1}),
    "ill-typed": msgpack.packb({"t": "Ping", "nonce": "one", "client_time_ms": 2}),
    "bool-for-int": msgpack.packb({"t": "Ack", "snapshot_id": True}),
    "text-frame": '{"t": "Ping"}',
    "unknown-t": msgpack.packb({"t": "Teleport", "x": 1}),
    "server-t": msgpack.packb({"t": "Pong", "nonce": 1}),
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_message_gets_an_error_and_the_connection_stays(
    running: Running, name: str
) -> None:
    client = await running.joined_client()
    await client.send_raw(MALFORMED[name])
    error = await client.expect(ErrorMessage)
    expected = "unknown_type" if name in ("unknown-t", "server-t") else "malformed"
    assert error.code == expected
    await _still_answers(client, 7)


async def test_many_malformed_messages_close_1008(running: Running) -> None:
    client = await running.joined_client()
    for _ in range(11):
        await client.send_raw(b"\xc1")
    code, reason = await client.closed()
    assert (code, reason) == (1008, "too many malformed messages")
    metrics = await running.metrics()
    assert metric_value(metrics, "astranet_kicks_total", reason="malformed") == 1
    assert metric_value(metrics, "astranet_malformed_messages_total") == 11


async def test_message_over_64_kib_closes_1009(running: Running) -> None:
    client = await running.joined_client()
    await client.send_raw(b"\x00" * (64 * 1024 + 1))
    code, _ = await client.closed()
    assert code == 1009
    await running.ended(client)  # the server counts the kick after the close frame left
    metrics = await running.metrics()
    assert metric_value(metrics, "astranet_kicks_total", reason="too_large") == 1


async def test_exactly_64_kib_is_not_too_large(running: Running) -> None:
    client = await running.joined_client()
    await client.send_raw(b"\xc1" * (64 * 1024))
    assert (await client.expect(ErrorMessage)).code == "malformed"
    await _still_answers(client, 8)


async def _attack(
    running: Running,
    room_id: str,
    kind: int,
    stop: asyncio.Event,
    party_token: bytes,
    flooding: asyncio.Event,
) -> None:
    """Sit in the victim's room and, while ``flooding`` is set, flood garbage of ``kind``."""
    client = await running.client()
    await client.hello()
    request = {"t": "JoinRoom", "room_id": room_id, "party_token": party_token}
    await client.send_raw(msgpack.packb(request))
    garbage = [b"\xc1", msgpack.packb({"t": "Nope"}), b"\x00" * 70_000][kind]
    again = (running, room_id, kind, stop, party_token, flooding)
    try:
        while not stop.is_set():
            await flooding.wait()
            await client.send_raw(garbage)
            await asyncio.sleep(0)  # a fair loop: the victim's reader is in it too
            if kind == 2:  # oversize: closed at once; come back and do it again
                await client.closed()
                return await _attack(*again)
    except (ConnectionClosed, TimeoutError):
        if not stop.is_set():
            return await _attack(*again)
    finally:
        await client.ws.close()


@pytest.mark.slow
async def test_flooding_neighbours_do_not_delay_the_victims_snapshots(running: Running) -> None:
    victim = await running.joined_client(party_size=4)  # hold three seats for the attackers
    room_id = victim.joined.room_id  # type: ignore[union-attr]
    token = victim.match.party_token  # type: ignore[union-attr]
    assert token is not None
    stop, flooding = asyncio.Event(), asyncio.Event()
    attackers = [
        asyncio.create_task(_attack(running, room_id, kind, stop, token, flooding))
        for kind in range(3)
    ]
    gaps: dict[bool, list[float]] = {False: [], True: []}  # flooded? -> inter-arrival times
    try:
        for _ in range(FLOOD_ROUNDS):
            for flood in (False, True):
                if flood:
                    flooding.set()
                else:
                    flooding.clear()
                await victim.next_snapshot()  # the gap across the switch counts for neither
                gaps[flood].extend(await victim.snapshot_gaps(PHASE_SNAPSHOTS))
    finally:
        stop.set()
        flooding.set()  # wake the idle ones so they see the stop
        await asyncio.gather(*attackers, return_exceptions=True)
    quiet, flooded = np.array(gaps[False]), np.array(gaps[True])
    quiet_p99, flooded_p99 = float(np.percentile(quiet, 99)), float(np.percentile(flooded, 99))
    assert flooded_p99 <= quiet_p99 + FLOOD_EXTRA_GAP_S, (
        f"victim gap p99 {flooded_p99 * 1000:.1f} ms flooded vs {quiet_p99 * 1000:.1f} ms quiet"
    )
    assert float(flooded.mean()) <= 1.25 * float(quiet.mean())
    assert victim.ws.close_code is None
    metrics = await running.metrics()
    assert metric_value(metrics, "astranet_kicks_total", reason="malformed") >= 1
