"""WIRE rule 3 (signed input) over real sockets, under both signature-failure policies."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from astranet.examples.dots import SPEED, encode_input, game
from astranet.net.messages import ErrorMessage, Snapshot

from .conftest import DecodedView, Running, StartServer, WireClient, metric_value, position_after

pytestmark = pytest.mark.timeout(20)

RIGHT = encode_input(1.0, 0.0)


def _tampered(client: WireClient, blob: bytes = RIGHT):
    frame = client.input_frame(blob)
    return dataclasses.replace(frame, sig=bytes(b ^ 0x55 for b in frame.sig))


async def _applied(client: WireClient, seq: int) -> Snapshot:
    """The first snapshot whose last_input_seq reached ``seq``."""
    return await client.snapshot_where(
        lambda s: s.last_input_seq is not None and s.last_input_seq >= seq
    )


async def test_kick_policy_closes_1008_on_a_tampered_signature(running: Running) -> None:
    client = await running.joined_client()
    await client.send(_tampered(client))
    code, reason = await client.closed()
    assert (code, reason) == (1008, "input frame signature verification failed")
    metrics = await running.metrics()
    assert metric_value(metrics, "astranet_kicks_total", reason="bad_signature") == 1


async def test_kick_policy_closes_1008_on_a_replayed_seq(running: Running) -> None:
    client = await running.joined_client()
    await client.send_input(RIGHT, seq=10)
    await _applied(client, 10)
    await client.send_input(RIGHT, seq=10)
    code, reason = await client.closed()
    assert (code, reason) == (1008, "input frame replayed")
    assert metric_value(await running.metrics(), "astranet_kicks_total", reason="replay") == 1


async def test_kick_policy_refuses_an_older_seq_too(running: Running) -> None:
    client = await running.joined_client()
    await client.send_input(RIGHT, seq=50)
    await client.send_input(RIGHT, seq=49)
    assert await client.closed() == (1008, "input frame replayed")


async def test_warn_policy_replies_and_keeps_playing(serve: StartServer) -> None:
    running = await serve("--sig-failure-policy", "warn")
    client = await running.joined_client()
    net_id = client.joined.entity  # type: ignore[union-attr]
    view = DecodedView(game.schema)
    start = await position_after(client, view, net_id)

    await client.send(_tampered(client))
    error = await client.expect(ErrorMessage)
    assert (error.code, error.message) == (
        "bad_signature",
        "input frame signature verification failed",
    )
    await client.send_input(RIGHT, seq=20)
    await client.send_input(RIGHT, seq=20)
    error = await client.expect(ErrorMessage)
    assert (error.code, error.message) == ("replay", "input frame replayed")

    client.seq = 20  # number on from the highest accepted seq
    for _ in range(5):
        last = await client.send_input(RIGHT)
    moved = await position_after(client, view, net_id, lambda s: s.last_input_seq == last.seq)
    # seq 20 and the 5 valid frames after it moved us; the dropped frames did not.
    step = SPEED / 30
    assert moved[0] - start[0] == pytest.approx(6 * step, abs=2 / 512)
    assert moved[1] == start[1]
    assert client.ws.close_code is None
    metrics = await running.metrics()
    assert metric_value(metrics, "astranet_kicks_total", reason="bad_signature") == 0


async def test_undecodable_blob_counts_as_an_empty_applied_input(running: Running) -> None:
    client = await running.joined_client()
    net_id = client.joined.entity  # type: ignore[union-attr]
    view = DecodedView(game.schema)
    start = await position_after(client, view, net_id)
    frame = await client.send_input(b"\x01\x02\x03 not dots input")
    snapshot = await _applied(client, frame.seq)
    assert snapshot.last_input_seq == frame.seq
    view.apply(snapshot)
    assert np.array_equal(view.position(net_id), start)  # an empty input: stand still
    # No error reply came before the seq was applied (expect() would have raised on one)...
    metrics = await running.metrics()
    assert metric_value(metrics, "astranet_undecodable_inputs_total") == 1
    assert metric_value(metrics, "astranet_malformed_messages_total") == 0
    # ... and the connection carries on: the next real input moves the avatar.
    frame = await client.send_input(RIGHT)
    moved = await position_after(client, view, net_id, lambda s: s.last_input_seq == frame.seq)
    assert moved[0] > start[0]
