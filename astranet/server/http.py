"""The HTTP side port (default 8789): health, regions, rooms, metrics, the browser client's files.

Routes (WIRE.md "Transport"): ``GET /healthz`` -> 200 ``ok``; ``GET /regions`` -> 200 JSON
array; ``GET /rooms`` -> 200 JSON array of ``{room_id, region, game_mode, players, capacity,
tick}``; ``GET /metrics`` -> 200 Prometheus text; ``GET /play`` -> the browser client
(``/play/`` and the files under it come from the package folder ``astranet/web/``); any other
path -> 404; another method on a known path -> 405 with ``Allow``. ``HEAD`` works wherever
``GET`` does (load balancers probe ``HEAD /healthz``). Query strings are ignored.

Other components add routes before :meth:`HttpSidePort.start`:
``side_port.add_json_route("/nodes", provider)`` (a JSON view, cached and CORS-enabled like
``/rooms``) or ``side_port.add_route("/schema", handler)`` (any aiohttp handler).

How: aiohttp's server (a well-kept HTTP/1.1 implementation: keep-alive and pipelined requests,
HEAD, conditional and range requests for files, bounded request lines and headers) runs in the
game server's event loop, so every handler here must be quick. What keeps it quick under abuse:

* **Renders are coalesced** (:class:`CoalescedRender`): ``/metrics`` renders at most once per
  ``METRICS_MIN_INTERVAL_S`` (0.1 s) however many requests arrive, and every answer is a render
  that began after the request arrived (so a test that caused a kick then reads ``/metrics``
  sees it). ``/rooms`` does the same and also answers from cache while the room directory has
  not changed, for up to ``ROOMS_MAX_AGE_S`` (1 s: only the ``tick`` field goes stale).
* **Per-address rate limit**: a token bucket per peer address (``HttpLimits``), over budget ->
  ``429`` with ``Retry-After``; the table of buckets is bounded.
* **Request size limits**: request line and each header <= 8 KiB, <= 64 headers, body <= 16 KiB
  (the API has no request bodies), idle keep-alive connections closed after 15 s.
* ``--http-host`` binds this port apart from the game port (e.g. a private network only).

Static files: only regular files below ``astranet/web/`` (resolved path checked, so neither
``..`` nor a symlink leaves it), no dot-files, no directory listings; explicit content types
for the web formats; ``Cache-Control: no-cache`` plus aiohttp's ``ETag``/``Last-Modified`` so a
browser revalidates (304) instead of running a stale client after an upgrade.
CORS: JSON answers carry ``Access-Control-Allow-Origin`` per ``--allowed-origins``
(:mod:`astranet.server.origins`, default any origin).
Benchmark: benchmarks/abuse.py (``metrics_flood``, ``rooms_flood``, ``pipelined_http``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from astranet.errors import InvalidState
from astranet.net.ratelimit import TokenBucket
from astranet.server.metrics import CONTENT_TYPE_LATEST, ServerMetrics
from astranet.server.origins import AllowedOrigins, cors_headers

__all__ = [
    "DEFAULT_WEB_DIR",
    "CoalescedRender",
    "HttpLimits",
    "HttpSidePort",
    "Provider",
]

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"
TEXT_CONTENT_TYPE = "text/plain"
#: The browser client's files (engineer "browser" fills it); served under /play/ if it exists.
DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent / "web"
PLAY_PATH = "/play"
INDEX_FILE = "index.html"
METRICS_MIN_INTERVAL_S = 0.1  # issue 16: at most 10 renders/s (~1 ms each at 10k rooms)
ROOMS_MIN_INTERVAL_S = 0.1
ROOMS_MAX_AGE_S = 1.0  # an unchanged directory is answered from cache this long (tick lags)
#: A render may use at most this share of the event loop: the interval between renders grows
#: with their cost (``/rooms`` at 10,000 rooms is ~22 ms: one render per ~0.9 s, not 10/s).
RENDER_LOOP_SHARE = 0.025
MAX_RENDER_INTERVAL_S = 1.0  # however costly, a render at least once a second (WIRE freshness)
# Explicit types for what a web client ships (Python 3.11's mimetypes lacks .mjs/.wasm).
WEB_CONTENT_TYPES: Mapping[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}


class _DropClientErrors(logging.Filter):
    """aiohttp logs a traceback (at ERROR for an over-long line) per malformed request: one
    attacker request would buy ~1 KB of log. Those are the client's fault and already answered
    400; drop them, keep everything else (a handler that raised still logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, HttpProcessingError)


_transport_log = logging.getLogger("astranet.server.http.transport")
_transport_log.addFilter(_DropClientErrors())

Provider = Callable[[], object]  # returns something json.dumps accepts
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RegionsProvider = Callable[[], Sequence[str]]
RoomsProvider = Callable[[], Iterable[Mapping[str, object]]]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Abuse bounds of the side port; each value says why."""

    #: Per peer address. A dashboard, a Prometheus scrape and a browser page together make a
    #: few requests a second; a test suite polling /rooms on loopback makes tens. 50/s with a
    #: burst of 200 never refuses those, and an attacker's flood costs one bucket check each.
    rate_per_s: float = 50.0
    burst: float = 200.0
    #: Buckets kept (one per address seen recently); beyond it the least recently seen go.
    max_tracked_peers: int = 4096
    #: The API takes no bodies; 16 KiB refuses uploads early (aiohttp answers 413).
    max_body_bytes: int = 16 * 1024
    #: nginx's default large_client_header_buffers is 8 KiB; 64 headers fits any browser.
    max_line_bytes: int = 8190
    max_headers: int = 64
    #: Idle keep-alive connections are closed after this (aiohttp's default is 75 s).
    keepalive_timeout_s: float = 15.0


class CoalescedRender:
    """Render on demand, at most once per ``min_interval_s``, never answering older than asked.

    :meth:`get` returns a body whose render began after the call (waiting for the next allowed
    render if needed, and sharing one render among every caller waiting for it), except that
    when ``version()`` is unchanged since the last render and that render is younger than
    ``max_age_s``, the cached body is returned at once. The interval between renders is
    ``min_interval_s``, or longer for a costly render: ``render time / RENDER_LOOP_SHARE``,
    capped at ``MAX_RENDER_INTERVAL_S``.
    """

    def __init__(
        self,
        render: Callable[[], bytes],
        *,
        min_interval_s: float,
        max_age_s: float = 0.0,
        version: Callable[[], object] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._render = render
        self._min_interval_s = min_interval_s
        self._max_age_s = max_age_s
        self._version = version
        self._clock = clock
        self._lock = asyncio.Lock()
        self._body: bytes | None = None
        self._started = -math.inf  # clock() when the cached body's render began
        self._rendered_version: object = None
        self._interval_s = min_interval_s
        self.renders = 0

    async def get(self) -> bytes:
        asked = self._clock()
        async with self._lock:
            body = self._body
            if body is not None:
                if self._started >= asked:
                    return body  # rendered for someone who arrived after us
                if (
                    self._version is not None
                    and asked - self._started < self._max_age_s
                    and self._version() == self._rendered_version
                ):
                    return body
                wait = self._started + self._interval_s - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
            self._started = started = self._clock()
            self._rendered_version = self._version() if self._version is not None else None
            self._body = body = self._render()
            self.renders += 1
            cost_s = self._clock() - started
            self._interval_s = max(
                self._min_interval_s, min(MAX_RENDER_INTERVAL_S, cost_s / RENDER_LOOP_SHARE)
            )
            return body


class _PeerRateLimit:
    """One token bucket per peer address, the table bounded (least recently seen evicted)."""

    def __init__(self, limits: HttpLimits, clock: Clock = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.refused = 0

    def retry_after_s(self, peer: str) -> float | None:
        """None if ``peer`` may make a request now (and charge it), else seconds to wait."""
        bucket = self._buckets.get(peer)
        if bucket is None:
            bucket = TokenBucket(self._limits.rate_per_s, self._limits.burst, self._clock)
            self._buckets[peer] = bucket
            while len(self._buckets) > self._limits.max_tracked_peers:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(peer)
        if bucket.try_take():
            return None
        self.refused += 1
        return bucket.retry_after_s()


def _json_response(body: bytes, request: web.Request, origins: AllowedOrigins) -> web.Response:
    response = web.Response(body=body, content_type=JSON_CONTENT_TYPE)
    response.headers.update(cors_headers(request.headers.get("Origin"), origins))
    response.headers["Cache-Control"] = "no-store"  # live state
    return response


def _safe_file(root: Path, relative: str) -> Path | None:
    """The regular file ``relative`` names below ``root``, or None (traversal, dot-file, dir)."""
    parts = relative.split("/")
    if any(not part or part.startswith(".") or "\\" in part or "\0" in part for part in parts):
        return None
    try:
        base = root.resolve(strict=True)
        candidate = base.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not candidate.is_relative_to(base) or not candidate.is_file():
        return None
    return candidate


class HttpSidePort:
    """The side port of one server: ``add_*_route`` as needed, ``await start()``, ``close()``."""

    def __init__(
        self,
        regions_provider: RegionsProvider,
        rooms_provider: RoomsProvider,
        metrics: ServerMetrics,
        *,
        rooms_version: Callable[[], object] | None = None,
        allowed_origins: AllowedOrigins = None,
        web_dir: Path | None = DEFAULT_WEB_DIR,
        limits: HttpLimits | None = None,
    ) -> None:
        self._allowed_origins = allowed_origins
        self._web_dir = web_dir
        self.limits = limits if limits is not None else HttpLimits()
        self.rate_limit = _PeerRateLimit(self.limits)
        self._app = web.Application(
            middlewares=[self._rate_limit_middleware], client_max_size=self.limits.max_body_bytes
        )
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self.metrics_render = CoalescedRender(metrics.render, min_interval_s=METRICS_MIN_INTERVAL_S)
        self._app.router.add_get("/healthz", self._healthz)
        self._app.router.add_get("/metrics", self._metrics)
        self.add_json_route(
            "/regions", lambda: list(regions_provider()), version=lambda: 0, max_age_s=math.inf
        )
        self.add_json_route(
            "/rooms",
            lambda: [dict(room) for room in rooms_provider()],
            version=rooms_version,
            max_age_s=ROOMS_MAX_AGE_S,
            min_interval_s=ROOMS_MIN_INTERVAL_S,
        )
        self._app.router.add_get(PLAY_PATH, self._play_redirect)
        self._app.router.add_get(PLAY_PATH + "/{path:.*}", self._static)

    # -- registration (before start) --------------------------------------------------------

    def add_route(self, path: str, handler: Handler, *, method: str = "GET") -> None:
        """Serve ``method path`` with an aiohttp handler (GET routes also answer HEAD)."""
        if self._runner is not None:
            raise InvalidState("add routes before HttpSidePort.start()")
        self._app.router.add_route(method, path, handler)
        if method == "GET":
            self._app.router.add_route("HEAD", path, handler)

    def add_json_route(
        self,
        path: str,
        provider: Provider,
        *,
        version: Callable[[], object] | None = None,
        max_age_s: float = 0.0,
        min_interval_s: float = ROOMS_MIN_INTERVAL_S,
    ) -> CoalescedRender:
        """Serve ``GET path`` as ``json.dumps(provider())`` with CORS; renders are coalesced
        (:class:`CoalescedRender`: ``version``/``max_age_s`` allow answering from cache)."""
        render = CoalescedRender(
            lambda: json.dumps(provider(), separators=(",", ":")).encode(),
            min_interval_s=min_interval_s,
            max_age_s=max_age_s,
            version=version,
        )

        async def serve_json(request: web.Request) -> web.Response:
            return _json_response(await render.get(), request, self._allowed_origins)

        async def preflight(request: web.Request) -> web.Response:
            response = web.Response(status=204)
            origin = request.headers.get("Origin")
            response.headers.update(cors_headers(origin, self._allowed_origins))
            response.headers["Access-Control-Allow-Methods"] = "GET, HEAD"
            response.headers["Access-Control-Max-Age"] = "600"
            return response

        self.add_route(path, serve_json)
        self._app.router.add_route("OPTIONS", path, preflight)
        return render

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The bound port, or None when not started."""
        return self._port

    async def start(self, host: str, port: int, *, ssl: ssl.SSLContext | None = None) -> int:
        """Bind and serve; returns the bound port (``port=0`` picks a free one)."""
        if self._runner is not None:
            raise InvalidState("HttpSidePort is already started")
        limits = self.limits
        runner = web.AppRunner(
            self._app,
            access_log=None,  # a line per scrape is noise (and an attacker's amplifier)
            keepalive_timeout=limits.keepalive_timeout_s,
            max_line_size=limits.max_line_bytes,
            max_field_size=limits.max_line_bytes,
            max_headers=limits.max_headers,
            handle_signals=False,
            logger=_transport_log,
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        return self._port

    async def close(self) -> None:
        """Stop listening and finish in-flight responses. Idempotent."""
        runner, self._runner = self._runner, None
        self._port = None
        if runner is not None:
            await runner.cleanup()

    # -- handlers --------------------------------------------------------------------------

    @web.middleware
    async def _rate_limit_middleware(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        retry_after = self.rate_limit.retry_after_s(request.remote or "?")
        if retry_after is not None:
            return web.Response(
                status=429,
                text="too many requests",
                headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
            )
        return await handler(request)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok", content_type=TEXT_CONTENT_TYPE)

    async def _metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=await self.metrics_render.get())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _play_redirect(self, request: web.Request) -> web.StreamResponse:
        if self._web_dir is None or _safe_file(self._web_dir, INDEX_FILE) is None:
            raise web.HTTPNotFound()
        # A redirect (as nginx does for a directory) so index.html's relative URLs resolve
        # below /play/.
        raise web.HTTPPermanentRedirect(PLAY_PATH + "/")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        relative = request.match_info["path"] or INDEX_FILE
        path = _safe_file(self._web_dir, relative) if self._web_dir is not None else None
        if path is None:
            raise web.HTTPNotFound()
        content_type = WEB_CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return web.FileResponse(
            path,
            headers={
                "Content-Type": content_type,
                "Cache-Control": "no-cache",  # revalidate (ETag/Last-Modified) on every load
                "X-Content-Type-Options": "nosniff",
            },
        )
