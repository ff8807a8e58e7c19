"""GameServer: assembles the lobby, the room host, sessions, HTTP and storage.

Shape (STYLE.md): the protocol lives in the sans-I/O ``ServerConnection``; a
:class:`~astranet.server.session.Session` is the asyncio shell of one socket; the
:class:`~astranet.server.lobby.Lobby` answers a connection that has no room yet (matchmaking
through a :class:`~astranet.server.matchmaking.MatchmakingBackend`: in-process by default,
Redis in cluster mode); the :class:`~astranet.server.roomhost.RoomHost` runs the rooms (one
:class:`~astranet.server.scheduler.TickLoop` task steps every room, never a loop per room or
connection) and their players. This module routes between them and owns what belongs to a
connection: authentication, per-peer bounds, the lobby idle timeout, kicks. Game-code
failures are isolated in the room host (see its docstring).

A room that raises while stepping is closed (its players get 1011) and the others go on.
Shutdown (WIRE rule 8): stop accepting, stop ticking, checkpoint every room, close every
client 1001, flush storage, return.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable

from aiohttp import web

from astranet.errors import BadRequest, MatchmakingError
from astranet.game import Game
from astranet.net import ServerPhase
from astranet.net.messages import (
    Ack,
    ClientMessage,
    Command,
    FindOrCreate,
    InputFrame,
    JoinRoom,
    Leave,
    Ping,
    Pong,
    Resume,
)
from astranet.server.auth import authenticator_from_config, token_from_path
from astranet.server.config import ServerConfig
from astranet.server.fdlimits import AcceptErrorHandler, fd_capacity
from astranet.server.hooks import NoPersistence, Persistence
from astranet.server.http import HttpSidePort
from astranet.server.lobby import Lobby
from astranet.server.matchmaking import InProcessMatchmaking, Matchmaker, MatchmakingBackend
from astranet.server.metrics import ServerMetrics
from astranet.server.origins import cors_headers
from astranet.server.peers import PeerBounds, peer_address
from astranet.server.room import Room
from astranet.server.roomhost import RoomHost
from astranet.server.session import (
    SHUTDOWN_REASON,
    TAKEOVER_REASON,
    Session,
    SnapshotEnvelopes,
)
from astranet.systems.input_ingestion import GAME_ERROR_REASON

__all__ = ["GameServer"]

log = logging.getLogger("astranet.server")

# Seconds given to clients to complete the closing handshake on shutdown (rule 8 wants the
# process gone within 10 s in all).
SHUTDOWN_CLOSE_TIMEOUT_S = 3.0

# Close reasons (from ServerConnection and the room) -> the bounded `kicks{reason}` label.
_KICK_LABELS = {
    "input frame signature verification failed": "bad_signature",
    "input frame replayed": "replay",
    "rate limit exceeded": "rate_limited",
    "too many malformed messages": "malformed",
}


LOBBY_IDLE_REASON = "lobby idle timeout: no room requested"
PEER_CONNECTIONS_REASON = "too many connections from this address"
OVERSIZED_SNAPSHOT_REASON = "snapshot too large for a message"
# Kick labels that are not a policy verdict on the player (their seat survives, A4).
_NOT_FINAL = frozenset({"handshake_timeout", "lobby_idle", "unauthorized"})


def _kick_label(code: int, reason: str) -> str | None:
    if code == 1009:
        return "too_large"
    if code != 1008:
        return None
    if reason.startswith("movement sanity"):
        return "movement_sanity"
    if reason.startswith(GAME_ERROR_REASON):
        return "game_error"
    if reason.startswith("handshake timeout"):
        return "handshake_timeout"
    if reason.startswith("lobby idle"):
        return "lobby_idle"
    if reason.startswith("unauthorized"):
        return "unauthorized"
    if reason == TAKEOVER_REASON:
        return None  # the player is fine; their old socket is not
    return _KICK_LABELS.get(reason, "other")


class GameServer:
    """The authoritative server for one game. ``await start()``, then ``await shutdown()``."""

    def __init__(
        self,
        config: ServerConfig,
        game: Game,
        *,
        persistence: Persistence | None = None,
        backend: Callable[[RoomHost], MatchmakingBackend] | None = None,
    ) -> None:
        self.config = config
        self.game = game
        self.metrics = ServerMetrics()
        self.persistence: Persistence = persistence if persistence is not None else NoPersistence()
        self.host = RoomHost(
            config,
            game,
            self.metrics,
            self.persistence,
            on_change=self._update_occupancy,
            on_second=self._expire_lobby_idlers,
        )
        #: Where matchmaking is decided: in-process (default) or the cluster (``backend``).
        self.backend: MatchmakingBackend = (
            backend(self.host) if backend is not None else InProcessMatchmaking(self.matchmaker)
        )
        self.host.backend = self.backend
        self.lobby = Lobby(
            self.host,
            self.backend,
            may_create_room=lambda session: self.peer_bounds.may_create_room(
                self._address(session)
            ),
            on_redirect=self._count_redirect,
        )
        self.sessions: set[Session] = set()
        #: WIRE A4: the JWT check Hello runs (None: anonymous, the default).
        self.authenticator = authenticator_from_config(
            config.auth_jwt_secret, config.auth_jwt_public_key
        )
        self.authenticate = self.authenticator.verify if self.authenticator else None
        self.peer_bounds = PeerBounds(config.max_connections_per_peer, config.max_rooms_per_peer)
        self._lobby_since: dict[Session, float] = {}
        self._peer_of: dict[Session, str] = {}  # sessions counted in peer_bounds
        self._final_kicks: set[Session] = set()  # closed for a policy reason: no seat hold
        self._accept_errors = AcceptErrorHandler(lambda: self.count_kick("fd_exhausted"))
        # Every admitted TCP connection, and those still upgrading (oldest first): with the
        # descriptor table nearly full, new connections evict the oldest upgrading one.
        self._connections: set[Session] = set()
        self._upgrading: dict[Session, None] = {}
        self._fd_capacity = fd_capacity()
        self.ws_port: int | None = None
        self.http_port: int | None = None
        self._ws_server: asyncio.Server | None = None
        #: Bumped whenever rooms or seats change: GET /rooms re-renders only then (or each 1 s).
        self.directory_version = 0
        #: The HTTP side port; other components add routes here before ``start()``.
        self.http = HttpSidePort(
            lambda: list(config.regions),
            self._rooms_json,
            self.metrics,
            rooms_version=lambda: (self.directory_version, self.backend.view_version()),
            allowed_origins=config.allowed_origins,
        )
        self.http.add_route("/schema", self._serve_schema)
        #: Origin header values the WebSocket upgrade accepts (SessionHost; None = any).
        self.ws_origins = self._ws_origins()
        self.backend.install(self)
        self._tick_task: asyncio.Task[None] | None = None

    # -- what the room host owns (persistence.restore and tests read and set these) --------

    @property
    def matchmaker(self) -> Matchmaker:
        return self.host.matchmaker

    @property
    def rooms(self) -> dict[str, Room]:
        return self.host.rooms

    @property
    def envelopes(self) -> SnapshotEnvelopes:
        """This tick's Snapshot envelopes, one per distinct payload (cleared every tick)."""
        return self.host.envelopes

    @property
    def tick(self) -> int:
        return self.host.tick

    @tick.setter
    def tick(self, value: int) -> None:
        self.host.tick = value

    @property
    def tick_offset(self) -> int:
        return self.host.tick_offset

    @tick_offset.setter
    def tick_offset(self, value: int) -> None:
        self.host.tick_offset = value

    def checkpoint_all(self) -> None:
        """Queue a checkpoint of every room's state (copied now, written off the loop)."""
        self.host.checkpoint_all()

    def report_storage(self) -> None:
        """Mirror the persistence layer's counters into /metrics (once a second)."""
        self.host.report_storage()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> tuple[int, int]:
        """Bind both ports and start ticking; returns ``(ws_port, http_port)``.

        In cluster mode the node joins the directory before it logs ``listening``; if Redis
        cannot be reached, both ports are closed again and ClusterUnavailable propagates.
        """
        config = self.config
        tls = self._tls_context()
        await self.persistence.restore(self)  # before listening: held seats exist from tick 0
        # One asyncio.Protocol per connection (astranet.server.edge); TLS is the same path.
        loop = asyncio.get_running_loop()
        self._accept_errors.install(loop)  # descriptor exhaustion: logged once, counted
        self._ws_server = await loop.create_server(
            self._new_session,
            config.host,
            config.ws_port,
            ssl=tls,
            ssl_handshake_timeout=config.handshake_timeout if tls else None,
        )
        self.ws_port = self._ws_server.sockets[0].getsockname()[1]
        self.http_port = await self.http.start(config.http_bind_host, config.http_port, ssl=tls)
        try:
            await self.backend.start(self)
        except BaseException:
            self._ws_server.close()
            await self._ws_server.wait_closed()
            await self.http.close()
            raise
        self._tick_task = asyncio.create_task(self.host.ticker.run(), name="astranet-tick")
        scheme = "wss" if tls else "ws"
        log.info("listening ws=%d http=%d", self.ws_port, self.http_port)
        log.info(
            "serving %s (%s://%s:%d) regions=%s tick=%d Hz",
            self.game.name,
            scheme,
            config.host,
            self.ws_port,
            ",".join(config.regions),
            config.tick_hz,
        )
        return self.ws_port, self.http_port

    async def shutdown(self) -> None:
        """Graceful stop (rule 8): stop accepting, checkpoint, close clients 1001.

        In cluster mode the node first leaves the directory with its rooms (A2: at once).
        """
        self._accept_errors.uninstall(asyncio.get_running_loop())
        if self._ws_server is not None:
            self._ws_server.close()  # stop accepting; open connections stay
        self.host.ticker.stop()
        if self._tick_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
        await self.backend.stop()
        await self.lobby.close()
        self.checkpoint_all()
        for session in list(self.sessions):
            session.close(1001, SHUTDOWN_REASON)
        if self.sessions:
            runs = [s.closed.wait() for s in self.sessions]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_CLOSE_TIMEOUT_S):
                    await asyncio.gather(*runs)
        for session in list(self.sessions):
            session.abort()  # did not finish the closing handshake in time
        if self._ws_server is not None:
            await self._ws_server.wait_closed()
        await self.http.close()
        await self.persistence.close()
        self.host.close_all()
        log.info("shut down after tick %d", self.tick)

    def _ws_origins(self) -> list[str | None] | None:
        """websockets' ``origins=``: None = any; else the allowed ones plus "no Origin header"
        (non-browser clients), the same rule as :func:`astranet.server.origins.origin_allowed`.
        """
        allowed = self.config.allowed_origins
        return None if allowed is None else [None, *sorted(allowed)]

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self.config.tls_enabled:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return context

    def _new_session(self) -> Session:
        return Session(self)

    def _expire_lobby_idlers(self, now: float) -> None:
        """Close connections that said Hello but asked for no room within the timeout (A4):
        idle lobby sockets would otherwise hold file descriptors forever."""
        timeout = self.config.lobby_idle_timeout
        for session in self.sessions:
            if session.conn.phase is not ServerPhase.LOBBY or session.player is not None:
                self._lobby_since.pop(session, None)
                continue
            since = self._lobby_since.setdefault(session, now)
            if now - since >= timeout:
                self._lobby_since.pop(session, None)
                session.close(1008, LOBBY_IDLE_REASON)

    # -- messages from sessions ------------------------------------------------------------

    def handle(self, session: Session, message: ClientMessage) -> None:
        """Act on one validated client message (called synchronously by the session)."""
        try:
            if isinstance(message, InputFrame):
                self.host.on_input(session, message)
                if message.ack is not None:  # WIRE A1: an Ack folded into the frame
                    self._ack(session, message.ack)
            elif isinstance(message, Command):
                self.host.on_command(session, message)
            elif isinstance(message, Ack):
                self._ack(session, message.snapshot_id)
            elif isinstance(message, Ping):
                session.send(
                    Pong(
                        message.nonce,
                        message.client_time_ms,
                        time.time_ns() // 1_000_000,
                        # The room's own tick (a failed-over room has an offset, Room.tick_offset).
                        session.room.tick if session.room is not None else self.tick,
                    )
                )
            elif isinstance(message, (FindOrCreate, JoinRoom, Resume)):
                self.lobby.request(session, message)
            elif isinstance(message, Leave):
                self.host.leave(session)
        except (MatchmakingError, BadRequest) as exc:
            # Refusals of well-formed requests (unknown region, mode not served, room full):
            # a reply, no strike, and the client stays in the lobby to try again.
            session.conn.send_error(exc)

    @staticmethod
    def _ack(session: Session, snapshot_id: int) -> None:
        """The client holds snapshot ``snapshot_id``: deltas and event resends may use it."""
        player = session.player
        if player is not None:
            player.baseline.ack(snapshot_id)
            player.outbox.ack(snapshot_id)

    @staticmethod
    def _address(session: Session) -> str:
        return peer_address(session.remote_address)

    # -- notifications from sessions -------------------------------------------------------

    def admit_connection(self, session: Session) -> bool:
        """SessionHost: a new TCP connection. False drops it before parsing: over the
        per-address connect rate, or when the descriptor table is full (A4). When full, the
        oldest connection that has not finished its WebSocket upgrade yet is dropped to make
        room, so silent sockets cannot lock players out; players in rooms are never evicted.
        """
        if not self.peer_bounds.may_connect(self._address(session)):
            self.count_kick("peer_connect_rate")
            return False
        if len(self._connections) >= self._fd_capacity:
            victim = next(iter(self._upgrading), None)
            if victim is None:
                self.count_kick("fd_reserve")
                return False
            del self._upgrading[victim]
            victim.abort()
            self.count_kick("fd_reserve_evicted")
        self._connections.add(session)
        self._upgrading[session] = None
        return True

    def connection_lost_unopened(self, session: Session) -> None:
        """SessionHost: an admitted connection closed before its upgrade finished."""
        self._connections.discard(session)
        self._upgrading.pop(session, None)

    def session_opened(self, session: Session) -> None:
        """A WebSocket is open (SessionHost): count it against its address (A4: over the
        bound it is closed 1013) and read ``?token=`` from the upgrade URL."""
        self._upgrading.pop(session, None)
        address = self._address(session)
        if not self.peer_bounds.connection_opened(address):
            self.metrics.count_kick("peer_connections")
            session.close(1013, PEER_CONNECTIONS_REASON)
            return
        self._peer_of[session] = address
        session.conn.upgrade_token = token_from_path(session.request_path)
        self.sessions.add(session)
        self._update_occupancy()

    def session_ended(self, session: Session) -> None:
        """The socket is gone: hold the seat for Resume unless the player left."""
        self.sessions.discard(session)
        self._connections.discard(session)
        self._upgrading.pop(session, None)
        address = self._peer_of.pop(session, None)
        if address is not None:
            self.peer_bounds.connection_closed(address)
        self._lobby_since.pop(session, None)
        final = session in self._final_kicks
        self._final_kicks.discard(session)
        sent = session.ws.close_sent
        if sent is not None and sent.code == 1009 and session.conn.close_expected() is None:
            # websockets itself failed the connection 1009 (max_size) and does not wait for
            # the peer's reply (so ws.close_code reads 1006); our own closes go via note_close.
            self.count_kick("too_large")
            final = True
        self.host.session_dropped(session, final=final)

    def note_close(self, session: Session, code: int, reason: str) -> None:
        label = _kick_label(code, reason)
        if label is not None:
            self.count_kick(label)
            log.info("closing %s: %d %s", session.peer, code, reason)
            if label not in _NOT_FINAL:
                self._final_kicks.add(session)

    def note_oversized_snapshot(self, session: Session, exc: Exception) -> None:
        """A snapshot that cannot fit in a message: this client can never be brought up to
        date, so it is closed 1011 and its seat freed (the room plays on); logged once per
        room, counted per client in ``astranet_kicks_total{reason="snapshot_too_large"}``."""
        room = session.room
        room_id = room.room_id if room is not None else "?"
        if room_id not in self.host.oversized_rooms:
            self.host.oversized_rooms.add(room_id)
            log.error("room %s: a snapshot does not fit in a message: %s", room_id, exc)
        if session.conn.close_expected() is None:
            self.count_kick("snapshot_too_large")
            self._final_kicks.add(session)
            session.close(1011, OVERSIZED_SNAPSHOT_REASON)

    def count_kick(self, reason: str) -> None:
        self.metrics.count_kick(reason)

    # -- views -----------------------------------------------------------------------------

    async def _serve_schema(self, request: web.Request) -> web.Response:
        """``GET /schema``: the canonical schema JSON, byte for byte (CRC32 = fingerprint)."""
        response = web.Response(
            body=self.game.schema.canonical_json(), content_type="application/json"
        )
        response.headers.update(
            cors_headers(request.headers.get("Origin"), self.config.allowed_origins)
        )
        return response

    def _rooms_json(self) -> list[dict[str, object]]:
        return self.backend.rooms_json(self.tick)

    def _count_redirect(self) -> None:
        self.directory_version += 1  # a redirect held a seat elsewhere: /rooms may differ

    def _update_occupancy(self) -> None:
        self.directory_version += 1
        self.metrics.set_occupancy(
            connections=len(self.sessions), rooms=len(self.rooms), players=self.host.players()
        )
