"""The WebSocket edge on its own: framing, HTTP answers, and message delivery over loopback."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode

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
