"""GameServer: assembles rooms, sessions, matchmaking, the tick loop, HTTP and storage.

Shape (STYLE.md): the protocol lives in the sans-I/O ``ServerConnection``; a
:class:`~astranet.server.session.Session` is the asyncio shell of one socket; a
:class:`~astranet.server.room.Room` is one esper world stepped synchronously; this module only
routes between them. One :class:`~astranet.server.scheduler.TickLoop` task steps every room
(never a loop per room or connection): a 30 Hz budget is shared, so a room is a few hundred
microseconds of Python and numpy, and one task keeps all rooms on the same absolute schedule.

A room that raises while stepping is closed (its players get 1011) and the others go on.
Shutdown (WIRE rule 8): stop accepting, stop ticking, checkpoint every room, close every
client 1001, flush storage, return.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import time

from aiohttp import web

from astranet.errors import BadRequest, InvalidState, MatchmakingError, ResumeDenied
from astranet.game import Game
from astranet.net.messages import (
    Ack,
    ClientMessage,
    FindOrCreate,
    InputFrame,
    JoinAccepted,
    JoinRoom,
    Leave,
    MatchResult,
    Ping,
    Pong,
    Resume,
)
from astranet.replication.rewind import VIEW_FRAC_ONE
from astranet.server.config import ServerConfig
from astranet.server.hooks import NoPersistence, Persistence
from astranet.server.http import HttpSidePort
from astranet.server.matchmaking import Matchmaker
from astranet.server.metrics import ServerMetrics
from astranet.server.origins import cors_headers
from astranet.server.room import Player, Room
from astranet.server.scheduler import TickLoop
from astranet.server.session import (
    SHUTDOWN_REASON,
    TAKEOVER_REASON,
    Session,
    SnapshotEnvelopes,
)
from astranet.storage import hash_resume_token, token_matches

__all__ = ["GameServer"]

log = logging.getLogger("astranet.server")

SESSION_KEY_BYTES = 32
RESUME_TOKEN_BYTES = 32
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


def _kick_label(code: int, reason: str) -> str | None:
    if code == 1009:
        return "too_large"
    if code != 1008:
        return None
    if reason.startswith("movement sanity"):
        return "movement_sanity"
    if reason.startswith("handshake timeout"):
        return "handshake_timeout"
    if reason == TAKEOVER_REASON:
        return None  # the player is fine; their old socket is not
    return _KICK_LABELS.get(reason, "other")


class GameServer:
    """The authoritative server for one game. ``await start()``, then ``await shutdown()``."""

    def __init__(
        self, config: ServerConfig, game: Game, *, persistence: Persistence | None = None
    ) -> None:
        self.config = config
        self.game = game
        self.metrics = ServerMetrics()
        self.matchmaker = Matchmaker(
            config.regions, config.game_modes, resume_seconds=config.resume_window
        )
        self.rooms: dict[str, Room] = {}
        self.sessions: set[Session] = set()
        self.tick = 0
        #: Added to the tick loop's count: a restored server continues above the ticks its
        #: predecessor sent (set by ``persistence.restore``; server_tick never decreases).
        self.tick_offset = 0
        self.persistence: Persistence = persistence if persistence is not None else NoPersistence()
        self.ws_port: int | None = None
        self.http_port: int | None = None
        #: This tick's Snapshot envelopes, one per distinct payload (cleared every tick).
        self.envelopes = SnapshotEnvelopes()
        self._ws_server: asyncio.Server | None = None
        #: Bumped whenever rooms or seats change: GET /rooms re-renders only then (or each 1 s).
        self.directory_version = 0
        #: The HTTP side port; other components add routes here before ``start()``.
        self.http = HttpSidePort(
            lambda: list(config.regions),
            self._rooms_json,
            self.metrics,
            rooms_version=lambda: self.directory_version,
            allowed_origins=config.allowed_origins,
        )
        self.http.add_route("/schema", self._serve_schema)
        #: Origin header values the WebSocket upgrade accepts (SessionHost; None = any).
        self.ws_origins = self._ws_origins()
        self._ticker = TickLoop(
            config.tick_hz,
            self._step_all,
            on_tick=self.metrics.observe_tick,
            on_skip=self.metrics.record_skipped,
        )
        self._tick_task: asyncio.Task[None] | None = None
        self._sweep_every = max(1, config.tick_hz)  # housekeeping once a second
        interval = self.persistence.checkpoint_interval
        self._checkpoint_every = max(1, round(interval * config.tick_hz)) if interval > 0 else 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> tuple[int, int]:
        """Bind both ports and start ticking; returns ``(ws_port, http_port)``."""
        config = self.config
        tls = self._tls_context()
        await self.persistence.restore(self)  # before listening: held seats exist from tick 0
        # One asyncio.Protocol per connection (astranet.server.edge); TLS is the same path.
        loop = asyncio.get_running_loop()
        self._ws_server = await loop.create_server(
            self._new_session,
            config.host,
            config.ws_port,
            ssl=tls,
            ssl_handshake_timeout=config.handshake_timeout if tls else None,
        )
        self.ws_port = self._ws_server.sockets[0].getsockname()[1]
        self.http_port = await self.http.start(config.http_bind_host, config.http_port, ssl=tls)
        self._tick_task = asyncio.create_task(self._ticker.run(), name="astranet-tick")
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
        """Graceful stop (rule 8): stop accepting, checkpoint, close clients 1001."""
        if self._ws_server is not None:
            self._ws_server.close()  # stop accepting; open connections stay
        self._ticker.stop()
        if self._tick_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
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
        for room in list(self.rooms.values()):
            room.close()
        log.info("shut down after tick %d", self.tick)

    def checkpoint_all(self) -> None:
        """Queue a checkpoint of every room's state (copied now, written off the loop)."""
        self.persistence.checkpoint(list(self.rooms.values()), self.tick)

    def _checkpoint_due(self, tick: int) -> None:
        """Checkpoint the rooms whose turn it is: each room once per interval, at a phase taken
        from its id, so the storage thread gets a room at a time instead of a burst of all of
        them, which would contend with the tick for the GIL (benchmarks/checkpoint_overhead.py).
        """
        every = self._checkpoint_every
        due = [room for room in self.rooms.values() if (tick + hash(room.room_id)) % every == 0]
        if due:
            self.persistence.checkpoint(due, tick)

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

    # -- the tick --------------------------------------------------------------------------

    def _step_all(self, loop_tick: int) -> None:
        tick = self.tick_offset + loop_tick
        self.tick = tick
        self.envelopes.clear()
        timings: dict[str, float] = {}
        for room in list(self.rooms.values()):
            try:
                for name, seconds in room.step(tick).items():
                    timings[name] = timings.get(name, 0.0) + seconds
            except Exception:
                # One room's bug must not stop every other room's clock.
                log.exception("room %s failed at tick %d; closing it", room.room_id, tick)
                self._close_room(room, code=1011, reason="room failed")
                continue
            self._enforce_sanity(room)
            self._report_ingestion(room)
        self.metrics.observe_systems(timings.items())
        if tick % self._sweep_every == 0:
            self._housekeeping()
        if self._checkpoint_every:
            self._checkpoint_due(tick)

    def _report_ingestion(self, room: Room) -> None:
        """Move the room's new ingestion counts into /metrics (deltas since last tick)."""
        now, seen = room.ingestion, room.reported
        metrics = self.metrics
        metrics.undecodable_inputs += now.undecodable - seen.undecodable
        metrics.input_violations += now.violations - seen.violations
        metrics.inputs_dropped += now.dropped - seen.dropped
        seen.undecodable, seen.violations, seen.dropped = (
            now.undecodable,
            now.violations,
            now.dropped,
        )

    def _enforce_sanity(self, room: Room) -> None:
        for player in room.players.values():
            reason = player.inputs.kick_reason
            if reason is not None:
                player.inputs.kick_reason = None
                session = player.session
                if isinstance(session, Session):
                    log.warning(
                        "kicking %s (player %s): %s", session.peer, player.player_id, reason
                    )
                    session.close(1008, reason)

    def _housekeeping(self) -> None:
        for room_id, player_id in self.matchmaker.drain_expired_resumes():
            room = self.rooms.get(room_id)
            player = room.players.get(player_id) if room is not None else None
            if room is not None and player is not None:
                log.info("player %s did not resume in time; removing avatar", player_id)
                try:
                    room.remove_player(player_id)  # game code (despawn_player)
                except Exception:
                    # Same rule as a failing step: close this room, keep the clock going.
                    log.exception("room %s failed removing %s; closing it", room_id, player_id)
                    self._close_room(room, code=1011, reason="room failed")
                    continue
                self.persistence.player_left(room, player)
        now = time.monotonic()
        for room in list(self.rooms.values()):
            idle = room.empty_since is not None and now - room.empty_since
            if idle and idle >= self.config.empty_room_grace and not self._has_holds(room):
                log.info("closing empty room %s", room.room_id)
                self._close_room(room)
        self._update_occupancy()
        self.report_storage()

    def report_storage(self) -> None:
        """Mirror the persistence layer's counters into /metrics (once a second)."""
        for stat, value in self.persistence.counters().items():
            self.metrics.storage.labels(stat=stat).set(value)

    def _has_holds(self, room: Room) -> bool:
        try:
            return self.matchmaker.room(room.room_id).held_seats > 0
        except MatchmakingError:
            return False

    def _close_room(self, room: Room, *, code: int = 1001, reason: str = "room closed") -> None:
        for player in room.players.values():
            if isinstance(player.session, Session):
                player.session.close(code, reason)
                player.session.player = None
        self.matchmaker.close_room(room.room_id)
        self.directory_version += 1
        self.rooms.pop(room.room_id, None)
        self.persistence.room_closed(room)
        room.close()

    # -- messages from sessions ------------------------------------------------------------

    def handle(self, session: Session, message: ClientMessage) -> None:
        """Act on one validated client message (called synchronously by the session)."""
        try:
            if isinstance(message, InputFrame):
                self._on_input(session, message)
            elif isinstance(message, Ack):
                if session.player is not None:
                    session.player.baseline.ack(message.snapshot_id)
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
            elif isinstance(message, FindOrCreate):
                seat = self.matchmaker.find_or_create(
                    message.region, message.game_mode, message.party_size
                )
                room = self.rooms.get(seat.room_id)
                if room is None:
                    room = self._create_room(seat.room_id, message.region, message.game_mode)
                self._seat_new_player(session, room)
            elif isinstance(message, JoinRoom):
                self.matchmaker.join_room(message.room_id)
                self._seat_new_player(session, self.rooms[message.room_id])
            elif isinstance(message, Resume):
                self._on_resume(session, message)
            elif isinstance(message, Leave):
                self._on_leave(session)
        except (MatchmakingError, BadRequest) as exc:
            # Refusals of well-formed requests (unknown region, mode not served, room full):
            # a reply, no strike, and the client stays in the lobby to try again.
            session.conn.send_error(exc)

    def _on_input(self, session: Session, frame: InputFrame) -> None:
        player = session.player
        if player is None:
            return  # room closed under this connection; it is being closed too
        view = frame.view  # lag compensation: the tick the client was rendering, if it said
        view_tick = None if view is None else view[0] + view[1] / VIEW_FRAC_ONE
        queued = player.inputs.push(frame.seq, frame.input_blob, view_tick)
        if not queued and session.room is not None:
            session.room.ingestion.dropped += 1  # sent faster than the tick: oldest dropped
        player.last_accepted_seq = frame.seq

    def _create_room(self, room_id: str, region: str, game_mode: str) -> Room:
        room = Room(room_id, region, game_mode, self.game, tick_hz=self.config.tick_hz)
        self.rooms[room_id] = room
        self.persistence.room_created(room)
        log.info("created room %s (%s, %s)", room_id, region, game_mode)
        return room

    def _seat_new_player(self, session: Session, room: Room) -> None:
        player_id = secrets.token_hex(8)
        resume_token = secrets.token_bytes(RESUME_TOKEN_BYTES)
        player = room.add_player(player_id, hash_resume_token(resume_token))
        self.persistence.player_joined(room, player)
        self._attach(session, room, player, resume_token)
        log.info("player %s joined room %s (entity %d)", player_id, room.room_id, player.net_id)

    def _on_resume(self, session: Session, message: Resume) -> None:
        room = self.rooms.get(message.room_id)
        player = room.players.get(message.player_id) if room is not None else None
        if (
            player is None
            or room is None
            or not token_matches(player.token_hash, message.resume_token)
        ):
            raise ResumeDenied("resume denied: unknown player or wrong token")
        previous = player.session
        if isinstance(previous, Session):
            # Takeover: the old socket may not know it is dead yet (WIRE rule 7).
            previous.player = None
            previous.close(1008, TAKEOVER_REASON)
        else:
            self.matchmaker.resume(room.room_id, player.player_id)
        player.baseline.reset()  # the next snapshot is full
        # The token stays valid: had this JoinAccepted been lost with the connection, a
        # rotated token would lock the player out of their own seat.
        self._attach(session, room, player, message.resume_token, resumed=True)
        log.info("player %s resumed in room %s", player.player_id, room.room_id)

    def _attach(
        self,
        session: Session,
        room: Room,
        player: Player,
        resume_token: bytes,
        *,
        resumed: bool = False,
    ) -> None:
        session.room, session.player = room, player
        player.session = session
        if not resumed:
            session.send(MatchResult(room.room_id))
        session.send(
            JoinAccepted(
                room.room_id,
                player.player_id,
                self.config.tick_hz,
                secrets.token_bytes(SESSION_KEY_BYTES),
                resume_token,
                player.net_id,
                schema=self.game.schema.fingerprint,
            ),
            last_input_seq=player.last_accepted_seq,
        )
        self._update_occupancy()

    def _on_leave(self, session: Session) -> None:
        player, room = session.player, session.room
        if player is None or room is None:
            return
        session.player = None
        player.session = None
        self.matchmaker.release(room.room_id)
        room.remove_player(player.player_id)
        self.persistence.player_left(room, player)
        self._update_occupancy()

    # -- notifications from sessions -------------------------------------------------------

    def session_opened(self, session: Session) -> None:
        """A WebSocket is open (SessionHost)."""
        self.sessions.add(session)
        self._update_occupancy()

    def session_ended(self, session: Session) -> None:
        """The socket is gone: hold the seat for Resume unless the player left."""
        self.sessions.discard(session)
        sent = session.ws.close_sent
        if sent is not None and sent.code == 1009 and session.conn.close_expected() is None:
            # websockets itself failed the connection 1009 (max_size) and does not wait for
            # the peer's reply (so ws.close_code reads 1006); our own closes go via note_close.
            self.count_kick("too_large")
        player, room = session.player, session.room
        if player is not None and room is not None and player.session is session:
            player.session = None
            player.inputs.clear()
            player.baseline.reset()
            if room.room_id in self.rooms:
                try:
                    self.matchmaker.hold_for_resume(room.room_id, player.player_id)
                except InvalidState:
                    log.debug("no seat to hold for %s", player.player_id)
        self._update_occupancy()

    def note_close(self, session: Session, code: int, reason: str) -> None:
        label = _kick_label(code, reason)
        if label is not None:
            self.count_kick(label)
            log.info("closing %s: %d %s", session.peer, code, reason)

    def note_oversized_snapshot(self, session: Session, exc: Exception) -> None:
        log.error("snapshot for %s does not fit in a message: %s", session.peer, exc)

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
        return [info.as_json(self.tick) for info in self.matchmaker.rooms()]

    def _update_occupancy(self) -> None:
        self.directory_version += 1
        players = sum(len(room.players) for room in self.rooms.values())
        self.metrics.set_occupancy(
            connections=len(self.sessions), rooms=len(self.rooms), players=players
        )
