"""The WebSocket edge on its own: framing, HTTP answers, message delivery over loopback, and the
data-frame fast path checked against websockets' own parser on random frame streams."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from astranet.server.edge import WebSocketEdge, binary_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_binary_frame_matches_websockets(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    expected = Frame(Opcode.BINARY, payload).serialize(mask=False, extensions=[])
    assert binary_frame(payload) == expected


class Echo(WebSocketEdge):
    """Echoes binary messages; records text ones and the request path."""

    opened: list[str | None] = []

    def on_open(self) -> None:
        Echo.opened.append(self.request_path)

    def on_message(self, data: bytes | str) -> None:
        if isinstance(data, bytes):
            self.write_message(data)
        else:
            self.close(1003, "text")


async def _serve() -> tuple[asyncio.Server, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Echo(max_message_bytes=1024), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_messages_echo_and_the_query_is_kept() -> None:
    server, port = await _serve()
    try:
        async with asyncio.timeout(10):
            async with connect(f"ws://127.0.0.1:{port}/play?token=abc", compression=None) as ws:
                await ws.send(b"hello")
                assert await ws.recv() == b"hello"
                big = bytes(1000)
                await ws.send([big[:500], big[500:]])  # fragmented: reassembled by the edge
                assert await ws.recv() == big
            assert Echo.opened[-1] == "/play?token=abc"
            async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
                await ws.send(bytes(1025))  # over max_message_bytes
                await ws.wait_closed()
                assert ws.close_code == 1009
    finally:
        server.close()


async def test_plain_http_gets_426() -> None:
    server, port = await _serve()
    try:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            status = await reader.readline()
            assert status.startswith(b"HTTP/1.1 426")
            writer.close()
    finally:
        server.close()


def test_the_edge_runs_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        await test_messages_echo_and_the_query_is_kept()
        await test_plain_http_gets_426()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def test_event_loop_choice() -> None:
    from astranet.errors import ConfigurationError
    from astranet.server.cli import loop_factory

    assert loop_factory("asyncio") is None
    with pytest.raises(ConfigurationError, match="ASTRANET_EVENT_LOOP"):
        loop_factory("tokio")


# ----------------------------------------------------------------- the data-frame fast path


class _Wire(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.out += data

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        return None

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class _Recorder(WebSocketEdge):
    def __init__(self, fast: bool) -> None:
        super().__init__(max_message_bytes=300)
        self.allow_fast = fast
        self.got: list[bytes | str] = []
        self.closing = False

    def on_message(self, data: bytes | str) -> None:
        if self.closing:
            return  # as a Session: nothing is handled once it decided to close
        self.got.append(data)
        if data == b"bye":
            self.closing = True
            self.close(1000, "bye")  # what follows is dropped, the peer's close awaited


_UPGRADE = (
    b"GET /?token=t HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _frame(opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    return Frame(opcode, data, fin).serialize(mask=True, extensions=[])


_UNMASKED = [bytes(2)]  # an unmasked continuation frame: a protocol error
_TOO_BIG = [_frame(Opcode.BINARY, bytes(301))]  # over max_message_bytes: 1009
_BYE = [_frame(Opcode.BINARY, b"bye")]  # the server closes on it
_messages = st.one_of(
    st.binary(max_size=200).map(lambda b: [_frame(Opcode.BINARY, b)]),
    st.binary(max_size=40).map(lambda b: [_frame(Opcode.TEXT, b)]),
    st.binary(max_size=20).map(lambda b: [_frame(Opcode.PING, b)]),
    st.lists(st.binary(max_size=90), min_size=2, max_size=4).map(
        lambda parts: (
            [_frame(Opcode.BINARY, parts[0], fin=False)]
            + [_frame(Opcode.CONT, p, fin=False) for p in parts[1:-1]]
            + [_frame(Opcode.CONT, parts[-1])]
        )
    ),
    st.just(_UNMASKED),
    st.just(_TOO_BIG),
    st.just([_frame(Opcode.CLOSE, b"\x03\xe8bye")]),
    st.just(_BYE),
)


async def _run(fast: bool, stream: bytes, cuts: list[int]) -> tuple[list, bytes, str]:
    edge = _Recorder(fast)
    wire = _Wire()
    edge.connection_made(wire)
    edge.data_received(_UPGRADE)
    assert edge._fast  # the upgrade ended its chunk: the fast path is on
    if not fast:
        edge._fast = False
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    for start, stop in itertools.pairwise(points):
        edge.data_received(stream[start:stop])
    edge.connection_lost(None)
    frames_out = bytes(wire.out).partition(b"\r\n\r\n")[2]  # after the 101 (it has a Date)
    return edge.got, frames_out, edge.ws.state.name


@settings(max_examples=150, deadline=None)
@given(st.lists(_messages, max_size=8), st.lists(st.integers(0, 5000), max_size=12))
def test_fast_path_delivers_what_websockets_alone_delivers(messages, cuts) -> None:
    stream = b"".join(frame for message in messages for frame in message)
    fast = asyncio.run(_run(True, stream, cuts))
    slow = asyncio.run(_run(False, stream, cuts))
    assert State.CLOSED.name == fast[2] == slow[2]
    if any(message in (_UNMASKED, _TOO_BIG) for message in messages):
        # websockets hands over a chunk's events after parsing all of it, so a fatal frame
        # can close the connection before earlier messages of its chunk are handled; the
        # fast path handles them in order first. Whatever websockets delivered, we did too.
        assert fast[0][: len(slow[0])] == slow[0]
        return
    assert fast[0] == slow[0]  # the same messages, in order
    if _BYE not in messages:  # (our close may go before or after a pong queued with it)
        assert fast[1] == slow[1]  # the same frames back: pongs, close frames


async def test_a_ping_flood_is_cut() -> None:
    edge = _Recorder(True)
    wire = _Wire()
    edge.connection_made(wire)
    edge.data_received(_UPGRADE)
    edge.data_received(_frame(Opcode.PING, b"") * 10_000 + _frame(Opcode.BINARY, b"late"))
    assert edge.ws.close_sent is not None and edge.ws.close_sent.code == 1008
    assert wire.out.count(b"\x8a\x00") <= 20  # at most the burst was answered
    assert edge.got == []


def test_the_edge_micro_benchmark_still_runs() -> None:
    """benchmarks/protocol.py drives a real Session with a stand-in host: keep them in step."""
    import importlib.util
    import time
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "protocol.py"
    spec = importlib.util.spec_from_file_location("astranet_bench_protocol_edge", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.measure_edge(1, 50, time.process_time)
    assert set(results) == {
        "edge InputFrame path",
        "edge InputFrame path, 3 per read",
        "edge InputFrame path, GameServer",
        "edge InputFrame path, GameServer, 3 per read",
        "snapshot send per client",
        "websockets parse only",
    }


# ------------------------------------------------------------------------------- keepalive

_PING = b"\x89\x00"  # an empty, unmasked server ping
_CLOSE_1011 = b"\x88"  # followed by the length and 0x03f3


class _Silent(_Recorder):
    """Keepalive at 50 ms / 50 ms; wakes the test on every write and every check."""

    def __init__(self) -> None:
        WebSocketEdge.__init__(
            self, max_message_bytes=300, ping_interval_s=0.05, ping_timeout_s=0.05
        )
        self.got = []
        self.closing = False
        self.checks = 0
        self.changed = asyncio.Event()

    def _keepalive(self) -> None:
        super()._keepalive()
        self.checks += 1
        self.changed.set()


class _Watched(_Wire):
    def __init__(self, edge: _Silent) -> None:
        super().__init__()
        self.edge = edge
        self.times: list[tuple[float, bytes]] = []

    def write(self, data: bytes) -> None:  # type: ignore[override]
        super().write(data)
        self.times.append((asyncio.get_running_loop().time(), bytes(data)))
        self.edge.changed.set()


async def _until(edge: _Silent, done) -> None:
    async with asyncio.timeout(5):
        while not done():
            edge.changed.clear()
            await edge.changed.wait()


async def test_a_silent_client_is_pinged_then_failed_1011() -> None:
    loop = asyncio.get_running_loop()
    edge = _Silent()
    wire = _Watched(edge)
    edge.connection_made(wire)
    edge.data_received(_UPGRADE)
    edge.data_received(_frame(Opcode.BINARY, b"hi"))
    last_heard = loop.time()
    await _until(edge, lambda: _PING in wire.out)
    ping_at = next(t for t, data in wire.times if data == _PING)
    assert ping_at - last_heard >= 0.05 - 0.005  # not before ping_interval of silence
    assert edge.ws.state is State.OPEN
    await _until(edge, lambda: edge.ws.close_sent is not None)
    assert edge.ws.close_sent.code == 1011
    closed_at = next(t for t, data in wire.times if data.startswith(_CLOSE_1011))
    assert closed_at - last_heard >= 0.10 - 0.005  # interval + timeout of silence
    edge.connection_lost(None)


async def test_a_client_that_keeps_sending_is_never_pinged() -> None:
    edge = _Silent()
    wire = _Watched(edge)
    edge.connection_made(wire)
    edge.data_received(_UPGRADE)
    async with asyncio.timeout(5):
        while edge.checks < 6:  # six keepalive checks: three ping intervals
            edge.data_received(_frame(Opcode.BINARY, b"input"))
            await asyncio.sleep(0.01)  # the client's send rate, not a synchronisation
    assert _PING not in wire.out
    assert edge.ws.state is State.OPEN
    assert len(edge.got) >= 6
    edge.connection_lost(None)
