"""Tests of astranet.server.http on a real loopback socket with real HTTP clients."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from astranet.errors import InvalidState
from astranet.server.http import HttpSidePort, route
from astranet.server.metrics import CONTENT_TYPE_LATEST, ServerMetrics

REGIONS = ["us-east", "eu-central"]
ROOMS = [
    {"room_id": "AbCd1234", "region": "us-east", "game_mode": "coop", "players": 3,
     "capacity": 4, "tick": 901},
]  # fmt: skip


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes


def fetch(url: str) -> Reply:
    """A blocking GET with urllib (run in a thread); HTTP errors are replies, not raises."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return Reply(response.status, response.headers["Content-Type"], response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.headers["Content-Type"], error.read())


@pytest.fixture
async def side_port() -> AsyncIterator[tuple[str, ServerMetrics]]:
    metrics = ServerMetrics()
    port = HttpSidePort(lambda: REGIONS, lambda: ROOMS, metrics)
    bound = await port.start("127.0.0.1", 0)
    assert bound > 0 and port.port == bound
    yield f"http://127.0.0.1:{bound}", metrics
    await port.close()


@pytest.mark.timeout(15)
async def test_healthz(side_port: tuple[str, ServerMetrics]) -> None:
    base, _ = side_port
    reply = await asyncio.to_thread(fetch, base + "/healthz")
    assert (reply.status, reply.body) == (200, b"ok")
    assert reply.content_type.startswith("text/plain")


@pytest.mark.timeout(15)
async def test_regions_is_a_json_array(side_port: tuple[str, ServerMetrics]) -> None:
    base, _ = side_port
    reply = await asyncio.to_thread(fetch, base + "/regions")
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert json.loads(reply.body) == REGIONS


@pytest.mark.timeout(15)
async def test_rooms_lists_provider_rows(side_port: tuple[str, ServerMetrics]) -> None:
    base, _ = side_port
    reply = await asyncio.to_thread(fetch, base + "/rooms?verbose=1")  # query ignored
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert json.loads(reply.body) == ROOMS


@pytest.mark.timeout(15)
async def test_metrics_is_prometheus_text(side_port: tuple[str, ServerMetrics]) -> None:
    base, metrics = side_port
    metrics.rooms.set(9)
    reply = await asyncio.to_thread(fetch, base + "/metrics")
    assert reply.status == 200
    assert reply.content_type == CONTENT_TYPE_LATEST
    assert b"astranet_rooms 9.0" in reply.body


@pytest.mark.timeout(15)
@pytest.mark.parametrize("path", ["/", "/nope", "/healthz/extra", "/ROOMS"])
async def test_anything_else_is_404(side_port: tuple[str, ServerMetrics], path: str) -> None:
    base, _ = side_port
    reply = await asyncio.to_thread(fetch, base + path)
    assert reply.status == 404


@pytest.mark.timeout(15)
async def test_raw_get_without_upgrade_headers(side_port: tuple[str, ServerMetrics]) -> None:
    base, _ = side_port
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout=5)  # server closes: read to EOF
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Connection: close" in head and b"Content-Length: 2" in head
    assert body == b"ok"


@pytest.mark.timeout(15)
@pytest.mark.parametrize(
    ("request_head", "status_line"),
    [
        (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"405"),
        (b"DELETE /rooms HTTP/1.1\r\nHost: x\r\n\r\n", b"405"),
        (b"POST /other HTTP/1.1\r\nHost: x\r\n\r\n", b"404"),
        # websockets' parser refuses a request body or a non-HTTP line: closed, no response.
        (b"POST /rooms HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", b""),
        (b"GARBAGE\r\n\r\n", b""),
    ],
)
async def test_other_methods_and_garbage_are_refused(
    side_port: tuple[str, ServerMetrics], request_head: bytes, status_line: bytes
) -> None:
    base, _ = side_port
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request_head)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    await writer.wait_closed()
    if not status_line:
        assert raw == b""
        return
    assert raw.startswith(b"HTTP/1.1 " + status_line)
    if status_line == b"405":
        assert b"Allow: GET" in raw


@pytest.mark.timeout(15)
async def test_start_twice_and_close_twice() -> None:
    port = HttpSidePort(lambda: [], lambda: [], ServerMetrics())
    await port.start("127.0.0.1", 0)
    with pytest.raises(InvalidState):
        await port.start("127.0.0.1", 0)
    await port.close()
    await port.close()
    assert port.port is None


def test_route_is_pure_and_uses_providers_each_time() -> None:
    calls: list[str] = []

    def rooms() -> list[dict[str, object]]:
        calls.append("rooms")
        return []

    response = route("/rooms", lambda: ["x"], rooms, ServerMetrics())
    assert (response.status_code, response.body) == (200, b"[]")
    assert response.headers["Content-Type"] == "application/json"
    assert route("/regions", lambda: ("a", "b"), rooms, ServerMetrics()).body == b'["a", "b"]'
    assert calls == ["rooms"]


@pytest.mark.timeout(15)
async def test_failing_provider_gives_500_and_port_keeps_serving() -> None:
    def broken_rooms() -> list[dict[str, object]]:
        raise RuntimeError("provider bug")

    port = HttpSidePort(lambda: REGIONS, broken_rooms, ServerMetrics())
    base = f"http://127.0.0.1:{await port.start('127.0.0.1', 0)}"
    try:
        assert (await asyncio.to_thread(fetch, base + "/rooms")).status == 500
        assert (await asyncio.to_thread(fetch, base + "/healthz")).status == 200
    finally:
        await port.close()
