"""WIRE rule 1 (handshake) and rule 9 (Ping/Pong) over real sockets."""

from __future__ import annotations

import time

import msgpack
import pytest

from astranet.net.messages import ErrorMessage, FindOrCreate, HelloAck, Ping, Pong

from .conftest import Running, StartServer, metric_value

pytestmark = pytest.mark.timeout(20)


@pytest.mark.parametrize(
    "first",
    [
        b"\xc1\xff garbage",
        "a text frame",
        msgpack.packb({"t": "Ping", "nonce": 1, "client_time_ms": 2}),
    ],
    ids=["garbage", "text", "other-message"],
)
async def test_non_hello_first_is_expected_hello_then_1002(
    running: Running, first: bytes | str
) -> None:
    client = await running.client()
    await client.send_raw(first)
    error = await client.expect(ErrorMessage)
    assert (error.code, error.message) == ("expected_hello", "expected Hello")
    code, _ = await client.closed()
    assert code == 1002


async def test_valid_matchmaking_message_first_is_expected_hello(running: Running) -> None:
    client = await running.client()
    await client.send(FindOrCreate("us-east", "coop", 1))
    error = await client.expect(ErrorMessage)
    assert error.code == "expected_hello"
    assert (await client.closed())[0] == 1002


async def test_wrong_version_is_protocol_mismatch_then_1002(running: Running) -> None:
    client = await running.client()
    await client.send_raw(msgpack.packb({"t": "Hello", "protocol": 7}))
    error = await client.expect(ErrorMessage)
    assert error.code == "protocol_mismatch"
    assert error.message == "protocol mismatch: client=7, server=1"
    code, reason = await client.closed()
    assert (code, reason) == (1002, "protocol mismatch: client=7, server=1")


async def test_silent_connection_is_closed_after_handshake_timeout(serve: StartServer) -> None:
    running = await serve("--handshake-timeout", "0.3")
    client = await running.client()
    started = time.monotonic()
    code, reason = await client.closed(within_s=5)
    assert code == 1008 and reason.startswith("handshake timeout")
    assert time.monotonic() - started >= 0.25
    metrics = await running.metrics()
    assert metric_value(metrics, "astranet_kicks_total", reason="handshake_timeout") == 1


async def test_hello_in_time_cancels_the_handshake_deadline(serve: StartServer) -> None:
    running = await serve("--handshake-timeout", "0.3")
    client = await running.client()
    await client.hello()
    # "Nothing happens" for twice the deadline: bounded wait that must time out (no close).
    with pytest.raises(TimeoutError):
        await client.recv(within_s=0.6)
    await client.send(Ping(3, 4))
    assert (await client.expect(Pong)).nonce == 3
    assert client.ws.close_code is None


async def test_pong_echoes_and_carries_server_time_and_tick(running: Running) -> None:
    client = await running.joined_client()
    await client.next_snapshot()  # the tick is running
    before = time.time_ns() // 1_000_000
    await client.send(Ping(2**64 - 1, 123_456_789))
    pong = await client.expect(Pong)
    after = time.time_ns() // 1_000_000
    assert (pong.nonce, pong.client_time_ms) == (2**64 - 1, 123_456_789)
    assert before - 5 <= pong.server_time_ms <= after + 5
    assert 1 <= pong.server_tick <= running.server.tick


async def test_hello_ack_carries_version_1(running: Running) -> None:
    client = await running.client()
    await client.send_raw(msgpack.packb({"t": "Hello", "protocol": 1, "future": [1, 2]}))
    ack = await client.expect(HelloAck)
    assert ack.protocol == 1
