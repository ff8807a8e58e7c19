"""Tests for astranet.net.linkconditioner over real loopback sockets (127.0.0.1, port 0).

Timing bounds are deliberately generous: the machine is shared and noisy. Lower bounds are
the ones that matter (the conditioner must never deliver early); upper bounds only catch a
conditioner that adds far more delay than configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from astranet.errors import ConfigurationError
from astranet.net.linkconditioner import (
    MIN_RETRANSMIT_MS,
    Direction,
    LinkConditioner,
    LinkProfile,
    _DirectionState,
    main,
)

# Extra delay tolerated on top of the configured one before we call it wrong.
SLACK_S = 0.25

Factory = Callable[..., Awaitable[LinkConditioner]]


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


@pytest.fixture
async def make_conditioner() -> AsyncIterator[Factory]:
    started: list[LinkConditioner] = []

    async def factory(target_port: int, **kwargs: object) -> LinkConditioner:
        conditioner = LinkConditioner("127.0.0.1", target_port, seed=1, **kwargs)  # type: ignore[arg-type]
        await conditioner.start()
        started.append(conditioner)
        return conditioner

    yield factory
    for conditioner in started:
        await conditioner.close()


async def _ws_echo(connection: ServerConnection) -> None:
    async for message in connection:
        await connection.send(message)


@pytest.fixture
async def ws_port() -> AsyncIterator[int]:
    async with serve(_ws_echo, "127.0.0.1", 0) as server:
        yield next(iter(server.sockets)).getsockname()[1]


async def _open(conditioner: LinkConditioner) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert conditioner.port is not None
    return await asyncio.open_connection("127.0.0.1", conditioner.port)


async def _round_trip_s(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    started = time.perf_counter()
    writer.write(b"ping")
    await writer.drain()
    assert await reader.readexactly(4) == b"ping"
    return time.perf_counter() - started


@pytest.mark.timeout(20)
async def test_bytes_pass_intact_and_in_order_under_jitter(
    echo_port: int, make_conditioner: Factory
) -> None:
    jittery = LinkProfile(latency_ms=2, jitter_ms=30)
    conditioner = await make_conditioner(echo_port, upstream=jittery, downstream=jittery)
    reader, writer = await _open(conditioner)
    # Many small writes (separate chunks, each with its own jitter draw) and one big one.
    small = [f"message-{i:04d};".encode() for i in range(300)]
    big = os.urandom(256 * 1024)
    for message in small:
        writer.write(message)
        await writer.drain()
    writer.write(big)
    await writer.drain()
    expected = b"".join(small) + big
    received = await reader.readexactly(len(expected))
    assert received == expected
    writer.close()
    assert conditioner.stats.bytes_upstream == len(expected)
    assert conditioner.stats.bytes_downstream == len(expected)
    assert conditioner.stats.connections_total == 1


@pytest.mark.timeout(20)
@pytest.mark.parametrize("direction", [Direction.UPSTREAM, Direction.DOWNSTREAM])
async def test_one_way_latency_is_at_least_configured_and_close(
    echo_port: int, make_conditioner: Factory, direction: Direction
) -> None:
    delayed = {direction.value: LinkProfile(latency_ms=60)}
    conditioner = await make_conditioner(echo_port, **delayed)
    reader, writer = await _open(conditioner)
    samples = [await _round_trip_s(reader, writer) for _ in range(5)]
    writer.close()
    # Only one direction is delayed, so the round trip is one one-way latency.
    assert min(samples) >= 0.060
    assert min(samples) < 0.060 + SLACK_S


@pytest.mark.timeout(20)
async def test_round_trip_is_twice_the_latency(echo_port: int, make_conditioner: Factory) -> None:
    link = LinkProfile(latency_ms=40)
    conditioner = await make_conditioner(echo_port, upstream=link, downstream=link)
    reader, writer = await _open(conditioner)
    samples = [await _round_trip_s(reader, writer) for _ in range(5)]
    writer.close()
    assert min(samples) >= 0.080
    assert min(samples) < 0.080 + SLACK_S


@pytest.mark.timeout(20)
async def test_bandwidth_limit_caps_throughput(echo_port: int, make_conditioner: Factory) -> None:
    limit = 400_000  # bytes/s downstream
    conditioner = await make_conditioner(
        echo_port, downstream=LinkProfile(bandwidth_bytes_per_s=limit)
    )
    reader, writer = await _open(conditioner)
    payload = os.urandom(200_000)
    started = time.perf_counter()
    writer.write(payload)
    await writer.drain()
    assert await reader.readexactly(len(payload)) == payload
    elapsed = time.perf_counter() - started
    writer.close()
    # 200 kB at 400 kB/s: at least 0.5 s of serialisation, i.e. throughput <= the limit.
    assert len(payload) / elapsed <= limit * 1.02
    assert elapsed < 0.5 + 2.0


@pytest.mark.timeout(20)
async def test_loss_as_delay_blocks_the_chunks_behind(
    echo_port: int, make_conditioner: Factory
) -> None:
    conditioner = await make_conditioner(
        echo_port, upstream=LinkProfile(latency_ms=5, retransmit_ms=300)
    )
    reader, writer = await _open(conditioner)
    await _round_trip_s(reader, writer)  # connection fully set up
    conditioner.lose_next(Direction.UPSTREAM)
    started = time.perf_counter()
    writer.write(b"A" * 10)
    await writer.drain()
    # Pacing of the scenario, not synchronisation: B leaves 30 ms after A, on a link whose
    # profile loses nothing; whether or not the proxy read them together, B must wait.
    await asyncio.sleep(0.03)
    writer.write(b"B" * 10)
    await writer.drain()
    assert await reader.readexactly(20) == b"A" * 10 + b"B" * 10
    elapsed = time.perf_counter() - started
    writer.close()
    assert elapsed >= 0.300 + 0.005
    assert elapsed < 0.305 + 0.03 + SLACK_S
    assert conditioner.stats.chunks_delayed_by_loss == 1


@pytest.mark.timeout(20)
async def test_random_loss_is_seeded_and_keeps_bytes_intact(
    echo_port: int, make_conditioner: Factory
) -> None:
    lossy = LinkProfile(loss=0.5, retransmit_ms=20)
    conditioner = await make_conditioner(echo_port, upstream=lossy)
    reader, writer = await _open(conditioner)
    for i in range(40):
        message = f"{i:03d}".encode()
        writer.write(message)
        await writer.drain()
        assert await reader.readexactly(3) == message
    writer.close()
    assert 5 <= conditioner.stats.chunks_delayed_by_loss <= 35


def test_default_retransmit_delay_is_max_of_floor_and_twice_rtt() -> None:
    near = LinkConditioner("127.0.0.1", 1, LinkProfile(latency_ms=10), LinkProfile(latency_ms=10))
    assert near.retransmit_ms(Direction.UPSTREAM) == MIN_RETRANSMIT_MS
    far = LinkConditioner("127.0.0.1", 1, LinkProfile(latency_ms=100), LinkProfile(latency_ms=80))
    assert far.retransmit_ms(Direction.DOWNSTREAM) == 360.0


@pytest.mark.timeout(20)
async def test_stall_holds_a_direction_then_releases(
    echo_port: int, make_conditioner: Factory
) -> None:
    conditioner = await make_conditioner(echo_port)
    reader, writer = await _open(conditioner)
    await _round_trip_s(reader, writer)
    conditioner.stall(Direction.DOWNSTREAM, 300)
    stalled = await _round_trip_s(reader, writer)
    after = await _round_trip_s(reader, writer)
    writer.close()
    assert stalled >= 0.290
    assert after < stalled


def test_scheduled_stall_windows_push_delivery_to_their_end() -> None:
    state = _DirectionState(LinkProfile(stall_period_ms=1000, stall_ms=200))
    state.epoch = 50.0
    assert state.release_time(50.0) == pytest.approx(50.2)  # start of a window
    assert state.release_time(51.1) == pytest.approx(51.2)  # inside the second window
    assert state.release_time(50.5) == pytest.approx(50.5)  # between windows: untouched
    state.stall_until = 52.5  # a manual stall then a scheduled window right after it
    assert state.release_time(52.0) == pytest.approx(52.5)
    assert state.release_time(53.1) == pytest.approx(53.2)


@pytest.mark.timeout(20)
async def test_sever_closes_the_websocket_client(ws_port: int, make_conditioner: Factory) -> None:
    conditioner = await make_conditioner(ws_port)
    async with connect(f"ws://127.0.0.1:{conditioner.port}") as ws:
        await ws.send(b"hello")
        assert await ws.recv() == b"hello"
        assert conditioner.stats.connections_active == 1
        await conditioner.sever()
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert conditioner.stats.connections_active == 0


@pytest.mark.timeout(20)
async def test_block_refuses_then_unblock_allows(ws_port: int, make_conditioner: Factory) -> None:
    conditioner = await make_conditioner(ws_port)
    url = f"ws://127.0.0.1:{conditioner.port}"
    existing = await connect(url)
    conditioner.block()
    with pytest.raises(websockets.ConnectionClosed):
        await existing.recv()
    with pytest.raises((OSError, websockets.InvalidHandshake)):
        await connect(url, open_timeout=5)
    assert conditioner.stats.connections_refused >= 1
    conditioner.unblock()
    async with connect(url, open_timeout=5) as ws:
        await ws.send(b"back")
        assert await ws.recv() == b"back"


@pytest.mark.timeout(20)
async def test_websocket_ping_pong_round_trip_through_the_proxy(
    ws_port: int, make_conditioner: Factory
) -> None:
    link = LinkProfile(latency_ms=40, jitter_ms=5)
    conditioner = await make_conditioner(ws_port, upstream=link, downstream=link)
    async with connect(f"ws://127.0.0.1:{conditioner.port}") as ws:
        pong_received = await ws.ping()
        latency_s = await pong_received
    assert 0.080 <= latency_s < 0.090 + SLACK_S
    assert conditioner.stats.bytes_upstream > 0
    assert conditioner.stats.bytes_downstream > 0


@pytest.mark.timeout(20)
async def test_set_profile_applies_at_runtime(echo_port: int, make_conditioner: Factory) -> None:
    conditioner = await make_conditioner(echo_port)
    reader, writer = await _open(conditioner)
    fast = await _round_trip_s(reader, writer)
    conditioner.set_profile(upstream=LinkProfile(latency_ms=100))
    slow = await _round_trip_s(reader, writer)
    writer.close()
    assert conditioner.profile(Direction.UPSTREAM).latency_ms == 100
    assert slow >= 0.100 > fast


@pytest.mark.timeout(20)
async def test_unreachable_target_resets_the_client(make_conditioner: Factory) -> None:
    probe = await asyncio.start_server(_echo, "127.0.0.1", 0)
    dead_port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    conditioner = await make_conditioner(dead_port)
    reader, writer = await _open(conditioner)
    # The proxy answers with an RST, which reads as either a reset or an EOF.
    with contextlib.suppress(ConnectionResetError):
        assert await reader.read(10) == b""
    writer.close()
    assert conditioner.stats.connections_refused == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"latency_ms": -1},
        {"jitter_ms": -5},
        {"bandwidth_bytes_per_s": 0},
        {"loss": 1.5},
        {"stall_period_ms": 100, "stall_ms": 100},
        {"latency_ms": float("inf")},
    ],
)
def test_bad_profiles_raise_configuration_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        LinkProfile(**kwargs)


async def test_bad_stall_direction_raises_configuration_error() -> None:
    conditioner = LinkConditioner("127.0.0.1", 1)
    with pytest.raises(ConfigurationError):
        conditioner.stall("sideways", 10)


@pytest.mark.parametrize(
    "argv",
    [
        ["--loss", "2"],
        ["--listen", "nope"],
        ["--latency-ms", "-3"],
        ["--stall-every-ms", "5", "--stall-ms", "10"],
    ],
)
def test_cli_rejects_bad_values(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.timeout(30)
async def test_cli_relays_and_exits_cleanly_on_ctrl_c(echo_port: int) -> None:
    code = "import sys; from astranet.net.linkconditioner import main; sys.exit(main(sys.argv[1:]))"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        "--listen",
        "127.0.0.1:0",
        "--target",
        f"127.0.0.1:{echo_port}",
        "--latency-ms",
        "10",
        "--seed",
        "3",
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        line = ""
        while "listening" not in line:
            raw = await asyncio.wait_for(process.stderr.readline(), 15)
            assert raw, "the conditioner exited before listening"
            line = raw.decode()
        port = int(line.split("listening 127.0.0.1:")[1].split()[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _round_trip_s(reader, writer) >= 0.020
        writer.close()
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
