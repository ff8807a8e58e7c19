"""Tests of astranet.server.http on a real loopback socket with real HTTP clients."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from astranet.errors import InvalidState
from astranet.server.http import CoalescedRender, HttpLimits, HttpSidePort
from astranet.server.metrics import CONTENT_TYPE_LATEST, ServerMetrics
from astranet.server.origins import parse_origins

REGIONS = ["us-east", "eu-central"]
ROOMS = [
    {"room_id": "AbCd1234", "region": "us-east", "game_mode": "coop", "players": 3,
     "capacity": 4, "tick": 901},
]  # fmt: skip


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def _lower(headers: object) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}  # type: ignore[attr-defined]


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Reply:
    """A blocking request with urllib (run in a thread); HTTP errors are replies, not raises."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return Reply(response.status, _lower(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, _lower(error.headers), error.read())


async def raw_exchange(base: str, data: bytes, *, read_until: int | None = None) -> bytes:
    """Send raw bytes; read until EOF (or until ``read_until`` responses have arrived)."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    raw = b""
    try:
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                raw += chunk
                if read_until is not None and raw.count(b"HTTP/1.") >= read_until:
                    break
    finally:
        writer.close()
    return raw


@dataclass
class SidePort:
    base: str
    metrics: ServerMetrics
    port: HttpSidePort
    rooms: list[dict[str, object]] = field(default_factory=lambda: list(ROOMS))


def _web_dir(tmp_path: Path) -> Path:
    web = tmp_path / "web"
    (web / "js").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>play</title>")
    (web / "js" / "client.mjs").write_text("export const x = 1;\n")
    (web / ".secret").write_text("no")
    (tmp_path / "outside.txt").write_text("outside")
    (web / "link.txt").symlink_to(tmp_path / "outside.txt")
    return web


@pytest.fixture
async def side_port(tmp_path: Path) -> AsyncIterator[SidePort]:
    metrics = ServerMetrics()
    holder: list[SidePort] = []
    port = HttpSidePort(
        lambda: REGIONS,
        lambda: holder[0].rooms,
        metrics,
        web_dir=_web_dir(tmp_path),
        allowed_origins=parse_origins("https://play.example.com"),
    )
    bound = await port.start("127.0.0.1", 0)
    assert bound > 0 and port.port == bound
    holder.append(SidePort(f"http://127.0.0.1:{bound}", metrics, port))
    yield holder[0]
    await port.close()


@pytest.mark.timeout(15)
async def test_healthz_get_and_head(side_port: SidePort) -> None:
    reply = await asyncio.to_thread(fetch, side_port.base + "/healthz")
    assert (reply.status, reply.body) == (200, b"ok")
    assert reply.content_type.startswith("text/plain")
    head = await asyncio.to_thread(fetch, side_port.base + "/healthz", "HEAD")
    assert (head.status, head.body) == (200, b"")
    for path in ("/rooms", "/metrics", "/regions"):
        assert (await asyncio.to_thread(fetch, side_port.base + path, "HEAD")).status == 200


@pytest.mark.timeout(15)
async def test_regions_and_rooms_are_json_with_cors(side_port: SidePort) -> None:
    reply = await asyncio.to_thread(fetch, side_port.base + "/regions")
    assert reply.status == 200 and reply.content_type == "application/json"
    assert json.loads(reply.body) == REGIONS
    allowed = {"Origin": "https://play.example.com"}
    reply = await asyncio.to_thread(fetch, side_port.base + "/rooms?verbose=1", "GET", allowed)
    assert reply.status == 200 and reply.content_type == "application/json"
    assert json.loads(reply.body) == ROOMS
    assert reply.headers["access-control-allow-origin"] == "https://play.example.com"
    other = {"Origin": "https://evil.example.com"}
    reply = await asyncio.to_thread(fetch, side_port.base + "/rooms", "GET", other)
    assert "access-control-allow-origin" not in reply.headers
    preflight = await asyncio.to_thread(fetch, side_port.base + "/rooms", "OPTIONS", allowed)
    assert preflight.status == 204
    assert "GET" in preflight.headers["access-control-allow-methods"]


@pytest.mark.timeout(15)
async def test_default_cors_is_any_origin() -> None:
    port = HttpSidePort(lambda: REGIONS, lambda: [], ServerMetrics(), web_dir=None)
    base = f"http://127.0.0.1:{await port.start('127.0.0.1', 0)}"
    try:
        reply = await asyncio.to_thread(fetch, base + "/regions", "GET", {"Origin": "http://x"})
        assert reply.headers["access-control-allow-origin"] == "*"
        assert (await asyncio.to_thread(fetch, base + "/play")).status == 404  # no web dir
    finally:
        await port.close()


@pytest.mark.timeout(15)
async def test_metrics_is_prometheus_text(side_port: SidePort) -> None:
    side_port.metrics.rooms.set(9)
    reply = await asyncio.to_thread(fetch, side_port.base + "/metrics")
    assert reply.status == 200
    assert reply.content_type == CONTENT_TYPE_LATEST
    assert b"astranet_rooms 9.0" in reply.body
    side_port.metrics.rooms.set(10)  # a change right after a render is still seen
    again = await asyncio.to_thread(fetch, side_port.base + "/metrics")
    assert b"astranet_rooms 10.0" in again.body


@pytest.mark.timeout(15)
@pytest.mark.parametrize("path", ["/", "/nope", "/healthz/extra", "/ROOMS", "/playx"])
async def test_anything_else_is_404(side_port: SidePort, path: str) -> None:
    assert (await asyncio.to_thread(fetch, side_port.base + path)).status == 404


@pytest.mark.timeout(15)
async def test_pipelined_requests_are_all_answered(side_port: SidePort) -> None:
    one = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /regions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw = await raw_exchange(side_port.base, one * 3 + last)
    assert raw.count(b"HTTP/1.1 200 OK") == 4
    assert raw.endswith(json.dumps(REGIONS, separators=(",", ":")).encode())


@pytest.mark.timeout(15)
@pytest.mark.parametrize(
    ("request_head", "status_line"),
    [
        (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"405"),
        (b"DELETE /rooms HTTP/1.1\r\nHost: x\r\n\r\n", b"405"),
        (b"POST /other HTTP/1.1\r\nHost: x\r\n\r\n", b"404"),
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 10_000 + b"\r\n\r\n", b"400"),
        (b"POST /rooms HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n", b"405"),
    ],
)
async def test_other_methods_garbage_and_oversize_are_refused(
    side_port: SidePort, request_head: bytes, status_line: bytes
) -> None:
    raw = await raw_exchange(side_port.base, request_head, read_until=1)
    assert raw[:12] in (b"HTTP/1.1 " + status_line, b"HTTP/1.0 " + status_line), raw[:200]
    if status_line == b"405":
        assert b"Allow: " in raw


@pytest.mark.timeout(15)
async def test_static_files_no_traversal_no_listing(side_port: SidePort) -> None:
    base = side_port.base
    redirect = await raw_exchange(base, b"GET /play HTTP/1.1\r\nHost: x\r\n\r\n", read_until=1)
    assert redirect.startswith(b"HTTP/1.1 308") and b"Location: /play/" in redirect
    index = await asyncio.to_thread(fetch, base + "/play/")
    assert index.status == 200 and index.body.startswith(b"<!doctype html>")
    assert index.content_type == "text/html; charset=utf-8"
    assert index.headers["cache-control"] == "no-cache" and "etag" in index.headers
    module = await asyncio.to_thread(fetch, base + "/play/js/client.mjs")
    assert module.status == 200 and module.content_type == "text/javascript; charset=utf-8"
    again = await asyncio.to_thread(
        fetch, base + "/play/js/client.mjs", "GET", {"If-None-Match": module.headers["etag"]}
    )
    assert again.status == 304
    for path in (
        "/play/js",
        "/play/js/",
        "/play/.secret",
        "/play/link.txt",
        "/play/../outside.txt",
        "/play/%2e%2e/outside.txt",
        "/play/js/..%2f..%2foutside.txt",
        "/play/nope.js",
    ):
        raw = await raw_exchange(
            base, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n", read_until=1
        )
        assert raw.startswith(b"HTTP/1.1 404"), (path, raw[:100])
        assert b"outside" not in raw


@pytest.mark.timeout(15)
async def test_rate_limit_per_address_answers_429(tmp_path: Path) -> None:
    limits = HttpLimits(rate_per_s=1.0, burst=5.0)
    port = HttpSidePort(lambda: REGIONS, lambda: [], ServerMetrics(), limits=limits)
    base = f"http://127.0.0.1:{await port.start('127.0.0.1', 0)}"
    try:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        raw = await raw_exchange(base, request * 10, read_until=10)
        assert raw.count(b"HTTP/1.1 200") == 5
        assert raw.count(b"HTTP/1.1 429") == 5 and b"Retry-After: " in raw
        assert port.rate_limit.refused == 5
    finally:
        await port.close()


@pytest.mark.timeout(15)
async def test_added_routes(side_port: SidePort) -> None:
    port = HttpSidePort(lambda: REGIONS, lambda: [], ServerMetrics(), web_dir=None)
    port.add_json_route("/nodes", lambda: [{"node": "a"}])
    base = f"http://127.0.0.1:{await port.start('127.0.0.1', 0)}"
    try:
        with pytest.raises(InvalidState):
            port.add_json_route("/late", lambda: [])
        reply = await asyncio.to_thread(fetch, base + "/nodes")
        assert reply.status == 200 and json.loads(reply.body) == [{"node": "a"}]
    finally:
        await port.close()


async def test_coalesced_render_bounds_renders_and_is_never_older_than_asked() -> None:
    state = {"value": 0}

    def render() -> bytes:
        return str(state["value"]).encode()

    now = [0.0]  # a still clock: every request below arrives at the same instant
    coalesced = CoalescedRender(render, min_interval_s=0.05, clock=lambda: now[0])
    assert await coalesced.get() == b"0"
    state["value"] = 1
    now[0] = 1.0
    bodies = await asyncio.gather(*(coalesced.get() for _ in range(200)))
    assert set(bodies) == {b"1"}  # everyone asked after the change sees it
    assert coalesced.renders == 2  # 200 concurrent requests, one render


async def test_coalesced_render_answers_from_cache_while_version_is_unchanged() -> None:
    state = {"value": 0, "version": 0}
    coalesced = CoalescedRender(
        lambda: str(state["value"]).encode(),
        min_interval_s=0.0,
        max_age_s=60.0,
        version=lambda: state["version"],
    )
    assert await coalesced.get() == b"0"
    state["value"] = 1  # not announced: the cached body stands
    assert await coalesced.get() == b"0"
    state["version"] = 1
    assert await coalesced.get() == b"1"
    assert coalesced.renders == 2


@pytest.mark.timeout(15)
async def test_start_twice_and_close_twice() -> None:
    port = HttpSidePort(lambda: [], lambda: [], ServerMetrics())
    await port.start("127.0.0.1", 0)
    with pytest.raises(InvalidState):
        await port.start("127.0.0.1", 0)
    await port.close()
    await port.close()
    assert port.port is None


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


async def test_a_costly_render_is_spaced_out() -> None:
    from astranet.server.http import RENDER_LOOP_SHARE

    now = [0.0]

    def render() -> bytes:
        now[0] += 0.01  # a 10 ms render
        return b"x"

    coalesced = CoalescedRender(render, min_interval_s=0.1, clock=lambda: now[0])
    await coalesced.get()
    assert coalesced._interval_s == pytest.approx(0.01 / RENDER_LOOP_SHARE)
