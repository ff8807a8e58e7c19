"""GameServer: assembles rooms, sessions, matchmaking, the tick loop, HTTP and storage.

Shape (STYLE.md): the protocol lives in the sans-I/O ``ServerConnection``; a
:class:`~astranet.server.session.Session` is the asyncio shell of one socket; a
:class:`~astranet.server.room.Room` is one esper world stepped synchronously; this module only
routes between them. One :class:`~astranet.server.scheduler.TickLoop` task steps every room
(never a loop per room or connection): a 30 Hz budget is shared, so a room is a few hundred
microseconds of Python and numpy, and one task keeps all rooms on the same absolute schedule.

Game-code failures (issue 11): a failure caused by one player's request or input refuses or
kicks only that player and keeps nothing it started: ``setup`` or ``spawn_player`` raising
answers ``game_error`` (no room, seat or avatar left behind); ``decode_input`` raising makes the
blob undecodable; ``check_input``/``apply_input`` raising kicks that player; ``despawn_player``
raising falls back to the library's despawn. Only a game *system* raising while the room steps
closes the room: its players get ``room_failed`` then close 1011, and it is gone from
``/rooms``, ``/metrics`` and matchmaking at once; the other rooms go on.
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

from astranet.errors import (
    BadRequest,
    Busy,
    GameError,
    InvalidState,
    MatchmakingError,
    ResumeDenied,
    RoomFailed,
    RoomNotFound,
)
from astranet.game import Game
from astranet.net import ServerPhase
from astranet.net.messages import (
    Ack,
    ClientMessage,
    ErrorMessage,
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
from astranet.server.auth import Identity, authenticator_from_config, token_from_path
from astranet.server.config import ServerConfig
from astranet.server.fdlimits import AcceptErrorHandler
from astranet.server.hooks import NoPersistence, Persistence
from astranet.server.http import HttpSidePort
from astranet.server.matchmaking import Matchmaker
from astranet.server.metrics import ServerMetrics
from astranet.server.origins import cors_headers
from astranet.server.peers import PeerBounds, peer_address
from astranet.server.room import Player, Room
from astranet.server.scheduler import TickLoop
from astranet.server.session import (
    SHUTDOWN_REASON,
    TAKEOVER_REASON,
    Session,
    SnapshotEnvelopes,
)
from astranet.storage import hash_resume_token, token_matches
from astranet.systems.input_ingestion import GAME_ERROR_REASON

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
        #: WIRE A4: the JWT check Hello runs (None: anonymous, the default).
        self.authenticator = authenticator_from_config(
            config.auth_jwt_secret, config.auth_jwt_public_key
        )
        self.authenticate = self.authenticator.verify if self.authenticator else None
        self.peer_bounds = PeerBounds(config.max_connections_per_peer, config.max_rooms_per_peer)
        # Authenticated player_id -> the room of their one seat (checked lazily on use).
        self._seat_of: dict[str, str] = {}
        self._lobby_since: dict[Session, float] = {}
        self._peer_of: dict[Session, str] = {}  # sessions counted in peer_bounds
        self._final_kicks: set[Session] = set()  # closed for a policy reason: no seat hold
        self._oversized_rooms: set[str] = set()  # rooms whose oversize was logged already
        self._accept_errors = AcceptErrorHandler(lambda: self.count_kick("fd_exhausted"))
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
        self._accept_errors.uninstall(asyncio.get_running_loop())
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
                self._fail_room(room)
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
                room.remove_player(player_id)  # game code, but a failure costs only the avatar
                self.persistence.player_left(room, player)
        now = time.monotonic()
        for room in list(self.rooms.values()):
            idle = room.empty_since is not None and now - room.empty_since
            if idle and idle >= self.config.empty_room_grace and not self._has_holds(room):
                log.info("closing empty room %s", room.room_id)
                self._close_room(room)
        self._expire_lobby_idlers(now)
        self._update_occupancy()
        self.report_storage()

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
        self._oversized_rooms.discard(room.room_id)
        self.directory_version += 1
        self.rooms.pop(room.room_id, None)
        self.persistence.room_closed(room)
        room.close()
        self._update_occupancy()

    def _fail_room(self, room: Room) -> None:
        """A game system raised: tell every player why (``room_failed``), close the room."""
        why = ErrorMessage(RoomFailed.code, "the game's code raised in this room; it is closed")
        for player in room.players.values():
            if isinstance(player.session, Session):
                with contextlib.suppress(InvalidState):  # already closing: the close wins
                    player.session.send(why)
        self._close_room(room, code=1011, reason="room failed")

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
                if self._take_over_own_seat(session, message.region, message.game_mode, None):
                    return
                seat = self.matchmaker.find_or_create(
                    message.region, message.game_mode, message.party_size
                )
                if seat.created and not self.peer_bounds.may_create_room(self._address(session)):
                    self.matchmaker.close_room(seat.room_id)
                    raise Busy(
                        "busy: too many rooms created from this address; try again in a minute"
                    )
                room = self.rooms.get(seat.room_id)
                if room is None:
                    room = self._create_room(seat.room_id, message.region, message.game_mode)
                self._seat_new_player(
                    session, room, party_token=seat.party_token, created=seat.created
                )
            elif isinstance(message, JoinRoom):
                if self._take_over_own_seat(session, None, None, message.room_id):
                    return
                self.matchmaker.join_room(message.room_id, message.party_token)
                room = self.rooms.get(message.room_id)
                if room is None:  # listed but never set up: give the seat back
                    self.matchmaker.release(message.room_id)
                    raise RoomNotFound("room ID does not exist")
                self._seat_new_player(session, room)
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
        # A frame signed with this session's key proves the client got its JoinAccepted,
        # so the resume token it replaced may go (rotation, A4).
        player.previous_token_hash = None
        view = frame.view  # lag compensation: the tick the client was rendering, if it said
        view_tick = None if view is None else view[0] + view[1] / VIEW_FRAC_ONE
        queued = player.inputs.push(frame.seq, frame.input_blob, view_tick)
        if not queued and session.room is not None:
            session.room.ingestion.dropped += 1  # sent faster than the tick: oldest dropped
        player.last_accepted_seq = frame.seq

    def _create_room(self, room_id: str, region: str, game_mode: str) -> Room:
        try:
            room = Room(room_id, region, game_mode, self.game, tick_hz=self.config.tick_hz)
        except Exception:
            log.exception("the game's setup() raised creating room %s; refusing", room_id)
            self.matchmaker.close_room(room_id)  # the seat (and any party holds) with it
            self.directory_version += 1
            raise GameError(
                "the game failed to set up a room: its setup() raised (see the server log)"
            ) from None
        self.rooms[room_id] = room
        self.persistence.room_created(room)
        log.info("created room %s (%s, %s)", room_id, region, game_mode)
        return room

    def _seat_new_player(
        self,
        session: Session,
        room: Room,
        *,
        party_token: bytes | None = None,
        created: bool = False,
    ) -> None:
        """Spawn and attach a player whose seat the matchmaker just gave out. If the game's
        ``spawn_player`` raises, the seat goes back (a room created for this request goes)."""
        identity = self._identity(session)
        player_id = identity.player_id if identity is not None else secrets.token_hex(8)
        resume_token = secrets.token_bytes(RESUME_TOKEN_BYTES)
        try:
            player = room.add_player(player_id, hash_resume_token(resume_token))
        except Exception:
            log.exception("the game's spawn_player() raised in room %s; refusing", room.room_id)
            if created and not room.players:
                self._close_room(room)
            else:
                self.matchmaker.release(room.room_id)
                self.directory_version += 1
            raise GameError(
                "the game failed to spawn your player: its spawn_player() raised"
                " (see the server log)"
            ) from None
        if identity is not None:
            self._seat_of[player_id] = room.room_id
        self.persistence.player_joined(room, player)
        self._attach(session, room, player, resume_token, party_token=party_token)
        log.info("player %s joined room %s (entity %d)", player_id, room.room_id, player.net_id)

    # -- identity (WIRE A4) ----------------------------------------------------------------

    @staticmethod
    def _identity(session: Session) -> Identity | None:
        identity = session.conn.identity
        return identity if isinstance(identity, Identity) else None

    @staticmethod
    def _address(session: Session) -> str:
        return peer_address(session.remote_address)

    def _own_seat(self, player_id: str) -> tuple[Room, Player] | None:
        room_id = self._seat_of.get(player_id)
        room = self.rooms.get(room_id) if room_id is not None else None
        player = room.players.get(player_id) if room is not None else None
        if room is None or player is None:
            self._seat_of.pop(player_id, None)  # stale: the seat went some other way
            return None
        return room, player

    def _take_over_own_seat(
        self, session: Session, region: str | None, game_mode: str | None, room_id: str | None
    ) -> bool:
        """One seat per ``sub`` (A4). If this identity holds a seat the request would land in
        (JoinRoom of its room, FindOrCreate of its region and mode), take it over and return
        True; if it holds one elsewhere, give that seat up first and return False."""
        identity = self._identity(session)
        owned = self._own_seat(identity.player_id) if identity is not None else None
        if owned is None:
            return False
        room, player = owned
        same = (
            room.room_id == room_id
            if room_id is not None
            else (room.region, room.game_mode) == (region, game_mode)
        )
        if not same:
            self._depart(room, player, close=(1008, TAKEOVER_REASON))
            return False
        self._reattach(session, room, player, announce=True)
        return True

    def _reattach(self, session: Session, room: Room, player: Player, *, announce: bool) -> None:
        """Move ``player`` to ``session`` (Resume or a takeover): old socket closed 1008, the
        resume token rotated, the next snapshot full."""
        previous = player.session
        if isinstance(previous, Session):
            # Takeover: the old socket may not know it is dead yet (WIRE rule 7).
            previous.player = None
            previous.close(1008, TAKEOVER_REASON)
        else:
            with contextlib.suppress(ResumeDenied):  # a hold may already have been swept
                self.matchmaker.resume(room.room_id, player.player_id)
        player.baseline.reset()  # the next snapshot is full
        resume_token = self._rotate_resume_token(room, player)
        self._attach(session, room, player, resume_token, resumed=not announce)

    def _rotate_resume_token(self, room: Room, player: Player) -> bytes:
        """A fresh resume token. The one it replaces stays valid until this session proves it
        got the new one (its first signed input): a JoinAccepted lost with the connection must
        not lock the player out of their own seat."""
        resume_token = secrets.token_bytes(RESUME_TOKEN_BYTES)
        if player.previous_token_hash is None:
            player.previous_token_hash = player.token_hash
        player.token_hash = hash_resume_token(resume_token)
        self.persistence.player_joined(room, player)  # upsert: the new hash survives restarts
        return resume_token

    def _depart(
        self,
        room: Room,
        player: Player,
        *,
        close: tuple[int, str] | None = None,
        release: bool = True,
    ) -> None:
        """Free ``player``'s seat now: close its socket (if ``close``), despawn, release."""
        session = player.session
        if isinstance(session, Session):
            session.player = None
            if close is not None:
                session.close(*close)
        player.session = None
        if release:
            with contextlib.suppress(ResumeDenied):
                self.matchmaker.resume(room.room_id, player.player_id)  # drop a resume hold
            try:
                self.matchmaker.release(room.room_id)
            except (InvalidState, MatchmakingError):
                log.warning("no seat to release for %s in %s", player.player_id, room.room_id)
        self._seat_of.pop(player.player_id, None)
        room.remove_player(player.player_id)  # game code, but a failure costs only the avatar
        self.persistence.player_left(room, player)
        self._update_occupancy()

    def _on_resume(self, session: Session, message: Resume) -> None:
        room = self.rooms.get(message.room_id)
        player = room.players.get(message.player_id) if room is not None else None
        identity = self._identity(session)
        if (
            player is None
            or room is None
            or (identity is not None and identity.player_id != player.player_id)
            or not self._token_valid(player, message.resume_token)
        ):
            raise ResumeDenied("resume denied: unknown player or wrong token")
        self._reattach(session, room, player, announce=False)
        log.info("player %s resumed in room %s", player.player_id, room.room_id)

    @staticmethod
    def _token_valid(player: Player, resume_token: bytes) -> bool:
        if token_matches(player.token_hash, resume_token):
            return True
        previous = player.previous_token_hash
        return previous is not None and token_matches(previous, resume_token)

    def _attach(
        self,
        session: Session,
        room: Room,
        player: Player,
        resume_token: bytes,
        *,
        resumed: bool = False,
        party_token: bytes | None = None,
    ) -> None:
        session.room, session.player = room, player
        player.session = session
        self._lobby_since.pop(session, None)
        if not resumed:
            session.send(MatchResult(room.room_id, party_token=party_token))
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
        self._depart(room, player)

    # -- notifications from sessions -------------------------------------------------------

    def session_opened(self, session: Session) -> None:
        """A WebSocket is open (SessionHost): count it against its address (A4: over the
        bound it is closed 1013) and read ``?token=`` from the upgrade URL."""
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
        player, room = session.player, session.room
        if player is not None and room is not None and player.session is session:
            if room.room_id not in self.rooms:
                player.session = None
            elif final:
                # A kick is final (A4): no hold, the seat is free now, Resume is denied.
                log.info("player %s loses the seat: kicked", player.player_id)
                self._depart(room, player)
            else:
                player.session = None
                player.inputs.clear()
                player.baseline.reset()
                try:
                    self.matchmaker.hold_for_resume(room.room_id, player.player_id)
                except (InvalidState, MatchmakingError):
                    # No seat to hold: keeping the avatar would leave a ghost that no Resume
                    # can reach and that keeps the room alive. Despawn it instead.
                    log.warning("no seat to hold for %s; removing the avatar", player.player_id)
                    self._depart(room, player, release=False)
        self._update_occupancy()

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
        if room_id not in self._oversized_rooms:
            self._oversized_rooms.add(room_id)
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
        return [info.as_json(self.tick) for info in self.matchmaker.rooms()]

    def _update_occupancy(self) -> None:
        self.directory_version += 1
        players = sum(len(room.players) for room in self.rooms.values())
        self.metrics.set_occupancy(
            connections=len(self.sessions), rooms=len(self.rooms), players=players
        )
