"""The HTTP side port (default 8789): health, regions, rooms and Prometheus metrics.

Routes (WIRE.md "Transport"): ``GET /healthz`` -> 200 ``ok``; ``GET /regions`` -> 200 JSON
array; ``GET /rooms`` -> 200 JSON array of ``{room_id, region, game_mode, players, capacity,
tick}``; ``GET /metrics`` -> 200 Prometheus text; any other path -> 404; another method on a
known path -> 405 with ``Allow: GET``. Query strings are ignored.

How: a second ``websockets.asyncio.server.serve`` on the HTTP port whose ``process_request``
answers *every* request with a ``Response``, so the WebSocket handshake never happens. The
HTTP parsing is websockets' own sans-I/O parser (a plain GET without Upgrade headers reaches
``process_request``), so there is no hand-written parser and no extra dependency; it runs in
the game server's event loop. The routing itself (:func:`route`) is a pure function of the
path, tested without sockets.

Limits: a request websockets' parser refuses (a body, Transfer-Encoding, not HTTP/1.0 or 1.1)
is closed without a response. Every response closes the connection (``Connection: close``,
no keep-alive); a slow client is cut after OPEN_TIMEOUT_S; request headers are bounded by
websockets' own limits (max 128 headers, 8 KiB lines). Providers are called on the event
loop and must be quick and synchronous; one that raises yields websockets' 500 and a log.
Benchmark: none (control-plane traffic).
"""

from __future__ import annotations

import email.utils
import http
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from astranet.errors import InvalidState
from astranet.server.metrics import CONTENT_TYPE_LATEST, ServerMetrics

__all__ = ["HttpSidePort", "route"]

JSON_CONTENT_TYPE = "application/json"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
OPEN_TIMEOUT_S = 5.0  # a client that has not finished its request headers by then is dropped
# websockets logs every request and close at INFO: a line per Prometheus scrape is noise at
# the server's default level, so its transport logger starts at WARNING (failures still show).
_transport_logger = logging.getLogger("astranet.server.http.transport")
_transport_logger.setLevel(logging.WARNING)

RegionsProvider = Callable[[], Sequence[str]]
RoomsProvider = Callable[[], Iterable[Mapping[str, object]]]


def _response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            ("Cache-Control", "no-store"),  # every answer is live state
        ]
    )
    return Response(status.value, status.phrase, headers, body)


_ROUTES = frozenset({"/healthz", "/regions", "/rooms", "/metrics"})


def route(
    path: str,
    regions_provider: RegionsProvider,
    rooms_provider: RoomsProvider,
    metrics: ServerMetrics,
    method: str = "GET",
) -> Response:
    """The response for ``method path``; pure apart from calling the providers."""
    resource = urlsplit(path).path
    if resource not in _ROUTES:
        return _response(http.HTTPStatus.NOT_FOUND, b"not found", TEXT_CONTENT_TYPE)
    if method != "GET":
        refused = _response(http.HTTPStatus.METHOD_NOT_ALLOWED, b"GET only", TEXT_CONTENT_TYPE)
        refused.headers["Allow"] = "GET"
        return refused
    if resource == "/healthz":
        return _response(http.HTTPStatus.OK, b"ok", TEXT_CONTENT_TYPE)
    if resource == "/regions":
        body = json.dumps(list(regions_provider())).encode()
        return _response(http.HTTPStatus.OK, body, JSON_CONTENT_TYPE)
    if resource == "/rooms":
        body = json.dumps([dict(room) for room in rooms_provider()]).encode()
        return _response(http.HTTPStatus.OK, body, JSON_CONTENT_TYPE)
    return _response(http.HTTPStatus.OK, metrics.render(), CONTENT_TYPE_LATEST)  # /metrics


class HttpSidePort:
    """The side port of one server. ``await start(host, port)``, later ``await close()``."""

    def __init__(
        self,
        regions_provider: RegionsProvider,
        rooms_provider: RoomsProvider,
        metrics: ServerMetrics,
    ) -> None:
        self._regions_provider = regions_provider
        self._rooms_provider = rooms_provider
        self._metrics = metrics
        self._server: Server | None = None

    @property
    def port(self) -> int | None:
        """The bound port, or None when not started."""
        if self._server is None:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int, **serve_kwargs: object) -> int:
        """Bind and serve; returns the bound port (``port=0`` picks a free one).

        ``serve_kwargs`` pass through to ``serve`` (e.g. ``ssl=`` for HTTPS).
        """
        if self._server is not None:
            raise InvalidState("HttpSidePort is already started")
        self._server = await serve(
            self._never_upgraded,
            host,
            port,
            process_request=self._process_request,
            open_timeout=OPEN_TIMEOUT_S,
            logger=_transport_logger,
            **serve_kwargs,  # type: ignore[arg-type]
        )
        bound = self.port
        assert bound is not None
        return bound

    async def close(self) -> None:
        """Stop listening and wait for in-flight responses. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response:
        # Returning a Response for every request means the WebSocket upgrade never happens.
        method = getattr(request, "method", "GET")  # websockets < 15 parsed GET only
        return route(
            request.path, self._regions_provider, self._rooms_provider, self._metrics, method
        )

    @staticmethod
    async def _never_upgraded(connection: ServerConnection) -> None:
        """Handler websockets requires; unreachable because every request gets a Response."""
        await connection.close(1008, "this port serves HTTP only")
