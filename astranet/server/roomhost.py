"""RoomHost: the part of the server that hosts rooms (the other part is the lobby).

Operations: the tick (:meth:`step_all`: every room stepped synchronously by one
:class:`~astranet.server.scheduler.TickLoop` task, never a loop per room or connection),
housekeeping once a second (expired resume windows, empty rooms), checkpoints, and everything
that happens to a player *inside* a room: being seated (:meth:`seat_new_player`), resuming
(:meth:`resume`, with the A4 token rotation and one seat per ``sub``), input, leaving
(:meth:`leave`), dropping (:meth:`session_dropped`: the seat is held for Resume, unless the
close was a final kick).

Snapshots leave in chunks: rooms step (capture and plan their payloads); every
``BATCH_ROOMS`` rooms or ``BATCH_WAIT_S`` one :class:`ReplicationBatch` pass encodes the chunk's
payloads together and they are sent, so the first room's clients wait about a millisecond for
the chunk, not for the whole tick (benchmarks/fanout_tick.py --compare).

Seats: the local :class:`~astranet.server.matchmaking.Matchmaker` is this node's seat book
(players, party holds, resume windows). Whoever decided a seat (the lobby's matchmaking
backend) took it in that book before :meth:`seat_new_player`; the room host gives seats back
(leave, expired resume, closed room) and tells the backend (``seats_released``,
``room_closed``), so a cluster backend can mirror them in Redis.

Game-code failures (issue 11): a failure caused by one player's request or input refuses or
kicks only that player and keeps nothing it started: ``setup`` or ``spawn_player`` raising
answers ``game_error`` (no room, seat or avatar left behind); ``decode_input`` raising makes the
blob undecodable; ``check_input``/``apply_input`` raising kicks that player; ``despawn_player``
raising falls back to the library's despawn. Only a game *system* raising while the room steps
closes the room: its players get ``room_failed`` then close 1011, and it is gone from
``/rooms``, ``/metrics`` and matchmaking at once; the other rooms go on.
Limits: none of its own (``MAX_ROOMS`` in matchmaking). Benchmark: benchmarks/server_load.py.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable

from astranet.errors import (
    GameError,
    InvalidState,
    MatchmakingError,
    ResumeDenied,
    RoomFailed,
    RoomNotFound,
)
from astranet.game import Game
from astranet.net.messages import (
    Command,
    ErrorMessage,
    InputFrame,
    JoinAccepted,
    MatchResult,
    Resume,
)
from astranet.replication.rewind import VIEW_FRAC_ONE
from astranet.server.auth import Identity
from astranet.server.config import ServerConfig
from astranet.server.hooks import Persistence
from astranet.server.matchmaking import (
    InProcessMatchmaking,
    Match,
    Matchmaker,
    MatchmakingBackend,
)
from astranet.server.metrics import ServerMetrics
from astranet.server.room import Player, Room
from astranet.server.scheduler import TickLoop
from astranet.server.session import TAKEOVER_REASON, Session, SnapshotEnvelopes
from astranet.storage import hash_resume_token, token_matches
from astranet.systems.events import COMMAND_REFUSED_EVENT, refused_event
from astranet.systems.snapshot_replication import ReplicationBatch, SnapshotReplicationSystem

__all__ = ["RESUME_TOKEN_BYTES", "SESSION_KEY_BYTES", "RoomHost"]

log = logging.getLogger("astranet.server")

SESSION_KEY_BYTES = 32
RESUME_TOKEN_BYTES = 32
_REPLICATION = SnapshotReplicationSystem.__name__  # its /metrics system label


class RoomHost:
    """Rooms, their clock and their players on this node."""

    def __init__(
        self,
        config: ServerConfig,
        game: Game,
        metrics: ServerMetrics,
        persistence: Persistence,
        *,
        on_change: Callable[[], None] = lambda: None,
        on_second: Callable[[float], None] = lambda now: None,
    ) -> None:
        self.config = config
        self.game = game
        self.metrics = metrics
        self.persistence = persistence
        self.matchmaker = Matchmaker(
            config.regions, config.game_modes, resume_seconds=config.resume_window
        )
        #: Told about released seats and closed rooms: the lobby's backend (set by the server).
        self.backend: MatchmakingBackend = InProcessMatchmaking(self.matchmaker)
        self.rooms: dict[str, Room] = {}
        #: This tick's Snapshot envelopes, one per distinct payload (cleared every tick).
        self.envelopes = SnapshotEnvelopes()
        #: Rooms step in chunks; each chunk's snapshots are encoded in one pass, then sent.
        self.replication_batch = ReplicationBatch()
        self.tick = 0
        #: Added to the tick loop's count: a restored server continues above the ticks its
        #: predecessor sent (set by ``persistence.restore``; server_tick never decreases).
        self.tick_offset = 0
        #: Rooms whose oversized snapshot was logged already.
        self.oversized_rooms: set[str] = set()
        # Authenticated player_id -> the room of their one seat (checked lazily on use).
        self._seat_of: dict[str, str] = {}
        self._on_change = on_change  # occupancy changed: /rooms and gauges
        self._on_second = on_second  # the server's own once-a-second duties
        self.ticker = TickLoop(
            config.tick_hz,
            self.step_all,
            on_tick=metrics.observe_tick,
            on_skip=metrics.record_skipped,
        )
        metrics.before_collect = self.report_counts
        self._sweep_every = max(1, config.tick_hz)  # housekeeping once a second
        interval = persistence.checkpoint_interval
        self._checkpoint_every = max(1, round(interval * config.tick_hz)) if interval > 0 else 0

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

    # -- the tick --------------------------------------------------------------------------

    def step_all(self, loop_tick: int) -> None:
        tick = self.tick_offset + loop_tick
        self.tick = tick
        self.envelopes.clear()
        timings: dict[str, float] = {}
        batch = self.replication_batch
        for room in list(self.rooms.values()):
            if not room.attended():
                continue  # nobody connected: frozen until someone resumes (WIRE A4)
            room.events.everyone = self.broadcast_event  # to=EVERYONE reaches every room
            try:
                room.step(tick, batch, timings)  # adds its systems' seconds to timings
            except Exception:
                # One room's bug must not stop every other room's clock.
                log.exception("room %s failed at tick %d; closing it", room.room_id, tick)
                batch.discard(room.replication)
                self.fail_room(room)
                continue
            self._enforce_sanity(room)
            if batch.due():  # a chunk of rooms stepped: encode theirs together, send
                self._flush_replication(timings)
        self._flush_replication(timings)
        self.metrics.observe_systems(timings.items())
        if tick % self._sweep_every == 0:
            self.housekeeping()
        if self._checkpoint_every:
            self._checkpoint_due(tick)

    def _flush_replication(self, timings: dict[str, float]) -> None:
        """Encode and deliver the batched rooms' snapshots (timed as their replication)."""
        started = time.perf_counter()
        failed = self.replication_batch.flush()
        spent = time.perf_counter() - started
        timings[_REPLICATION] = timings.get(_REPLICATION, 0.0) + spent
        if failed:  # as a room whose step raised: closed, the other rooms go on
            of_system = {id(room.replication): room for room in self.rooms.values()}
            for system in failed:
                room = of_system.get(id(system))
                if room is not None:
                    log.error("room %s failed delivering tick %d; closing", room.room_id, self.tick)
                    self.fail_room(room)

    def broadcast_event(self, event_type: str, data: bytes = b"") -> None:
        """One game event for every player of every room on this node."""
        for room in self.rooms.values():
            room.events.deliver_local(event_type, data)

    def report_counts(self) -> None:
        """Move every room's new ingestion and fan-out counts into the metrics' counters.

        Called by each /metrics scrape (``metrics.before_collect``) and for a room about to
        close, not after every room tick: 50-250 rooms x 30 Hz of bookkeeping nobody reads.
        """
        for room in self.rooms.values():
            self.report_room_counts(room)

    def report_room_counts(self, room: Room) -> None:
        """Move the room's new ingestion and fan-out counts into /metrics (since last call)."""
        now, seen = room.ingestion, room.reported
        metrics = self.metrics
        encodes, deliveries = room.fanout.drain_counts()
        metrics.snapshot_encodes += encodes
        metrics.snapshot_deliveries += deliveries
        metrics.undecodable_inputs += now.undecodable - seen.undecodable
        metrics.input_violations += now.violations - seen.violations
        metrics.inputs_dropped += now.dropped - seen.dropped
        clamps, resyncs, refused = room.drain_event_counts()
        metrics.rewind_clamps += clamps
        metrics.event_resyncs += resyncs
        metrics.commands_refused += refused
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

    def housekeeping(self) -> None:
        for room_id, player_id in self.matchmaker.drain_expired_resumes():
            self.backend.seats_released(room_id, 1)
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
                self.close_room(room)
        self._on_second(now)
        self._on_change()
        self.report_storage()

    def report_storage(self) -> None:
        """Mirror the persistence layer's counters into /metrics (once a second)."""
        for stat, value in self.persistence.counters().items():
            self.metrics.storage.labels(stat=stat).set(value)

    def _has_holds(self, room: Room) -> bool:
        if self.backend.has_holds(room.room_id):
            return True
        try:
            return self.matchmaker.room(room.room_id).held_seats > 0
        except MatchmakingError:
            return False

    def close_room(self, room: Room, *, code: int = 1001, reason: str = "room closed") -> None:
        self.report_room_counts(room)  # its last counts, before it leaves self.rooms
        for player in room.players.values():
            if isinstance(player.session, Session):
                player.session.close(code, reason)
                player.session.player = None
        self.matchmaker.close_room(room.room_id)
        self.oversized_rooms.discard(room.room_id)
        self.backend.room_closed(room.room_id)
        self.rooms.pop(room.room_id, None)
        self.persistence.room_closed(room)
        room.close()
        self._on_change()

    def fail_room(self, room: Room) -> None:
        """A game system raised: tell every player why (``room_failed``), close the room."""
        why = ErrorMessage(RoomFailed.code, "the game's code raised in this room; it is closed")
        for player in room.players.values():
            if isinstance(player.session, Session):
                with contextlib.suppress(InvalidState):  # already closing: the close wins
                    player.session.send(why)
        self.close_room(room, code=1011, reason="room failed")

    # -- players -------------------------------------------------------------------------

    def on_input(self, session: Session, frame: InputFrame) -> None:
        player = session.player
        if player is None:
            return  # room closed under this connection; it is being closed too
        # A frame signed with this session's key proves the client got its JoinAccepted,
        # so the resume token it replaced may go (rotation, A4).
        player.previous_token_hash = None
        # Lag compensation: the tick the client was rendering, if it said (frame.view, read
        # without the property's call and tuple, once per input).
        view = frame.view_tick
        view_tick = None if view is None else view + (frame.view_frac or 0) / VIEW_FRAC_ONE
        seq = frame.seq
        if not player.inputs.push(seq, frame.input_blob, view_tick) and session.room is not None:
            session.room.ingestion.dropped += 1  # sent faster than the tick: oldest dropped
        player.last_accepted_seq = seq

    def on_command(self, session: Session, command: Command) -> None:
        """A signature-checked Command: into the seat's queue (applied in the next tick)."""
        player = session.player
        if player is None or session.room is None:
            return
        reason = player.commands.push(command.seq, command.type, command.data)
        if reason == "replay":
            session.room.commands.refused += 1
            session.room.events.emit_library(
                COMMAND_REFUSED_EVENT, refused_event(command.seq, reason), player.player_id
            )

    def ensure_room_exists(self, room_id: str, region: str, game_mode: str) -> Room:
        try:
            room = Room(room_id, region, game_mode, self.game, tick_hz=self.config.tick_hz)
        except Exception:
            log.exception("the game's setup() raised creating room %s; refusing", room_id)
            self.matchmaker.close_room(room_id)  # the seat (and any party holds) with it
            self.backend.room_closed(room_id)
            self._on_change()
            raise GameError(
                "the game failed to set up a room: its setup() raised (see the server log)"
            ) from None
        self.rooms[room_id] = room
        self.persistence.room_created(room)
        log.info("created room %s (%s, %s)", room_id, region, game_mode)
        return room

    def seat_new_player(
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
                self.close_room(room)
            else:
                self.matchmaker.release(room.room_id)
                self.backend.seats_released(room.room_id, 1)
                self._on_change()
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

    def _own_seat(self, player_id: str) -> tuple[Room, Player] | None:
        room_id = self._seat_of.get(player_id)
        room = self.rooms.get(room_id) if room_id is not None else None
        player = room.players.get(player_id) if room is not None else None
        if room is None or player is None:
            self._seat_of.pop(player_id, None)  # stale: the seat went some other way
            return None
        return room, player

    def take_over_own_seat(
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
            self.depart(room, player, close=(1008, TAKEOVER_REASON))
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
        player.outbox.new_session()  # waiting events go out again on the new socket
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

    def depart(
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
                self.backend.seats_released(room.room_id, 1)
            except (InvalidState, MatchmakingError):
                log.warning("no seat to release for %s in %s", player.player_id, room.room_id)
        self._seat_of.pop(player.player_id, None)
        room.remove_player(player.player_id)  # game code, but a failure costs only the avatar
        self.persistence.player_left(room, player)
        self._on_change()

    def resume(self, session: Session, message: Resume) -> None:
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
        self._on_change()

    def leave(self, session: Session) -> None:
        player, room = session.player, session.room
        if player is None or room is None:
            return
        self.depart(room, player)

    # -- for the lobby and the server ------------------------------------------------------

    def players(self) -> int:
        return sum(len(room.players) for room in self.rooms.values())

    def close_all(self) -> None:
        """Release every room's world (shutdown; no room is closed in storage)."""
        for room in list(self.rooms.values()):
            room.close()

    def give_back_seat(self, room_id: str) -> None:
        """A seat was taken for a connection that went away before it was seated."""
        try:
            self.matchmaker.release(room_id)
        except (InvalidState, MatchmakingError):
            return
        self.backend.seats_released(room_id, 1)

    def abandon_new_room(self, room_id: str) -> None:
        """Forget a room the backend just created for a request that is refused after all."""
        if room_id not in self.rooms:
            self.matchmaker.close_room(room_id)
            self.backend.room_closed(room_id)

    def seat_in(self, session: Session, match: Match, *, build: bool) -> None:
        """Seat a new player where the backend's ``match`` says (its seat is already taken).

        With ``build`` (FindOrCreate, or a room the backend ``created``) a missing room is
        built here now; otherwise a room that should exist but does not (listed but never set
        up) gives the seat back: ``room_not_found``.
        """
        room = self.rooms.get(match.room_id)
        if room is None:
            if not (build or match.created):
                self.give_back_seat(match.room_id)
                raise RoomNotFound("room ID does not exist")
            room = self.ensure_room_exists(match.room_id, match.region, match.game_mode)
        self.seat_new_player(session, room, party_token=match.party_token, created=match.created)

    def session_dropped(self, session: Session, *, final: bool) -> None:
        """The socket is gone: hold the seat for Resume, unless the close was a final kick."""
        player, room = session.player, session.room
        if player is not None and room is not None and player.session is session:
            if room.room_id not in self.rooms:
                player.session = None
            elif final:
                # A kick is final (A4): no hold, the seat is free now, Resume is denied.
                log.info("player %s loses the seat: kicked", player.player_id)
                self.depart(room, player)
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
                    self.depart(room, player, release=False)
        self._on_change()
