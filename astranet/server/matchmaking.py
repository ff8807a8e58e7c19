"""Matchmaking: which room a FindOrCreate / JoinRoom / Resume lands in (WIRE.md rules 2 and 7).

Operations: ``find_or_create`` (join the fullest fitting room of a region+mode, else create one;
hold the rest of the party's seats), ``join_room`` (consume a held seat, else a free one),
``release`` (a player left or their avatar expired), ``hold_for_resume``/``resume`` (a dropped
player's seat is kept for the resume window), ``close_room``, ``restore_room`` (crash recovery)
and ``rooms()`` for ``GET /rooms``.

Goals: never overfill a room. Every method is synchronous and contains no ``await``, so on the
event loop each call is atomic: concurrent requests are serialised by the loop itself and need
no lock. Time comes from an injectable ``clock`` so tests need no sleeping; expired holds are
swept lazily at the start of each call (no timers, no tasks).

Party seats (WIRE A4): ``find_or_create`` with ``party_size`` > 1 returns a ``Seat`` carrying a
fresh ``party_token`` (16 random bytes) that opens the party's held seats; ``join_room`` with
that token takes one of them, without it only a free seat (else ``room_full``), so reading a
room id from ``/rooms`` is not enough to take a friend's seat. Tokens compare in constant time.

Buckets: the index of open rooms per (region, game_mode) drops a key once no room of it is
open, so a client inventing game modes cannot grow it (issue 16).

Seat accounting per room: ``players`` (seats taken, including dropped players still inside
their resume window) + live party holds <= ``capacity``.

The lobby does not call the Matchmaker directly: it awaits a :class:`MatchmakingBackend`
(:class:`InProcessMatchmaking` wraps this Matchmaker and is the embedded default; the Redis
backend in ``astranet.cluster`` decides cluster-wide and still keeps this node's seats here).

Limits: MAX_ROOMS live rooms. find_or_create scans only the rooms of that region+mode that
have a free seat (an index kept exact on every occupancy change); a sweep that finds an expired
hold is O(live rooms). Measured ~5 us/call with 3,000 full rooms (ad hoc timeit; no benchmark
file: this is request-rate, not per-tick work).
"""

from __future__ import annotations

import hmac
import itertools
import re
import secrets
import string
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from astranet.errors import (
    BadRequest,
    ConfigurationError,
    InvalidState,
    ResumeDenied,
    RoomFull,
    RoomNotFound,
    SeatExpired,
    UnknownRegion,
)

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_HOLD_SECONDS",
    "MAX_PARTY_SIZE",
    "MAX_ROOMS",
    "InProcessMatchmaking",
    "Match",
    "Matchmaker",
    "MatchmakingBackend",
    "RoomInfo",
    "Seat",
    "new_room_id",
]

DEFAULT_CAPACITY = 4  # WIRE rule 2
DEFAULT_HOLD_SECONDS = 30.0  # WIRE rule 2: party seats are held 30 s
DEFAULT_RESUME_SECONDS = 30.0  # WIRE rule 7: a dropped player's seat is held 30 s
MAX_PARTY_SIZE = 4  # WIRE rule 2: party_size 1..4
MAX_ROOMS = 10_000  # each room is an esper world ticking at 30 Hz; far beyond one process
MAX_EXPIRED_BACKLOG = MAX_ROOMS  # undrained resume expiries kept; oldest dropped beyond this
ROOM_ID_LENGTH = 8
ROOM_ID_ALPHABET = string.ascii_letters + string.digits
PARTY_TOKEN_BYTES = 16  # 128 random bits: unguessable for the 30 s a hold lives
ROOM_ID_PATTERN = re.compile(r"[A-Za-z0-9]{8}")
GAME_MODE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")  # WIRE rule 2


def new_room_id() -> str:
    """A fresh 8-character ``[A-Za-z0-9]`` id from ``secrets`` (62**8 ~ 2e14 values)."""
    return "".join(secrets.choice(ROOM_ID_ALPHABET) for _ in range(ROOM_ID_LENGTH))


@dataclass(frozen=True, slots=True)
class Seat:
    """Where a request landed. ``created``: the room is new; ``held``: a held seat was used."""

    room_id: str
    created: bool = False
    held: bool = False
    #: WIRE A4: opens the party's held seats (``find_or_create`` with party_size > 1).
    party_token: bytes | None = None


class _Hold(NamedTuple):
    """One held party seat: it expires at ``expiry``; ``token`` opens it."""

    expiry: float
    token: bytes


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """One row of ``GET /rooms`` minus ``tick`` (the room's simulation owns that)."""

    room_id: str
    region: str
    game_mode: str
    players: int
    capacity: int
    held_seats: int

    def as_json(self, tick: int) -> dict[str, object]:
        """The WIRE.md /rooms object for this room at ``tick``."""
        return {
            "room_id": self.room_id,
            "region": self.region,
            "game_mode": self.game_mode,
            "players": self.players,
            "capacity": self.capacity,
            "tick": tick,
        }


@dataclass(slots=True)
class _Room:
    room_id: str
    region: str
    game_mode: str
    capacity: int
    serial: int  # creation order: ties between equally full rooms go to the oldest
    players: int = 0
    party_holds: list[_Hold] = field(default_factory=list)  # seats not yet taken
    resume_holds: dict[str, float] = field(default_factory=dict)  # player_id -> expiry

    @property
    def occupied(self) -> int:
        return self.players + len(self.party_holds)

    def info(self) -> RoomInfo:
        return RoomInfo(
            self.room_id,
            self.region,
            self.game_mode,
            self.players,
            self.capacity,
            len(self.party_holds),
        )


class Matchmaker:
    """Seat bookkeeping for every live room of one server. Not thread-safe; loop-atomic."""

    def __init__(
        self,
        regions: Sequence[str],
        game_modes: Sequence[str] | None = None,
        capacity: int = DEFAULT_CAPACITY,
        hold_seconds: float = DEFAULT_HOLD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        room_id_factory: Callable[[], str] = new_room_id,
        resume_seconds: float = DEFAULT_RESUME_SECONDS,
        max_rooms: int = MAX_ROOMS,
    ) -> None:
        if not regions:
            raise ConfigurationError("a Matchmaker needs at least one region")
        if capacity < 1 or hold_seconds < 0 or resume_seconds < 0 or max_rooms < 1:
            raise ConfigurationError("capacity/max_rooms must be >= 1 and hold times >= 0")
        self.regions: tuple[str, ...] = tuple(regions)
        self.game_modes: frozenset[str] | None = (
            None if game_modes is None else frozenset(game_modes)
        )
        self.capacity = capacity
        self.hold_seconds = hold_seconds
        self.resume_seconds = resume_seconds
        self.max_rooms = max_rooms
        self._clock = clock
        self._new_room_id = room_id_factory
        self._rooms: dict[str, _Room] = {}  # every live room, in creation order
        # Rooms with at least one free seat, per (region, game_mode): find_or_create scans only
        # these. Kept exact by _reindex after every change of a room's occupancy.
        self._open: dict[tuple[str, str], dict[str, _Room]] = {}
        self._serials = itertools.count()
        self._expired_resumes: deque[tuple[str, str]] = deque(maxlen=MAX_EXPIRED_BACKLOG)
        # Earliest expiry of any hold: lets _sweep skip the scan on the common no-expiry call.
        self._next_expiry = float("inf")

    # --- requests from clients -------------------------------------------------------------

    def find_or_create(self, region: str, game_mode: str, party_size: int) -> Seat:
        """FindOrCreate: the joiner takes a seat; ``party_size - 1`` more are held."""
        self._check_region(region)
        self._check_game_mode(game_mode)
        self._check_party_size(party_size)
        now = self._sweep()
        open_rooms = self._open.get((region, game_mode), {})
        fitting = [
            room for room in open_rooms.values() if room.occupied + party_size <= room.capacity
        ]
        created = not fitting
        if created:
            room = self._create(region, game_mode)
        else:
            # Fullest first so rooms fill up instead of many half-empty ones; the oldest wins
            # ties, which makes placement deterministic.
            room = max(fitting, key=lambda candidate: (candidate.occupied, -candidate.serial))
        room.players += 1
        party_token = None
        if party_size > 1:
            party_token = secrets.token_bytes(PARTY_TOKEN_BYTES)
            hold = _Hold(now + self.hold_seconds, party_token)
            room.party_holds.extend([hold] * (party_size - 1))
            self._next_expiry = min(self._next_expiry, hold.expiry)
        self._reindex(room)
        return Seat(room.room_id, created=created, party_token=party_token)

    def check_request(
        self, region: str, game_mode: str, party_size: int, *, cluster: bool = False
    ) -> None:
        """Refuse a FindOrCreate this server would refuse (without taking a seat).

        ``cluster``: the region is checked cluster-wide by the directory, not here.
        """
        if not cluster:
            self._check_region(region)
        self._check_game_mode(game_mode)
        self._check_party_size(party_size)

    def has_room(self, room_id: str) -> bool:
        return room_id in self._rooms

    def join_room(self, room_id: str, party_token: bytes | None = None) -> Seat:
        """JoinRoom: with the party's token take one of its held seats, else a free seat."""
        self._sweep()
        room = self._get(room_id)
        if party_token is not None:
            for hold in room.party_holds:
                if hmac.compare_digest(hold.token, party_token):
                    room.party_holds.remove(hold)
                    room.players += 1  # occupancy unchanged: a hold became a player
                    return Seat(room.room_id, held=True)
        if room.occupied >= room.capacity:
            raise RoomFull(f"room {room_id} is full ({room.capacity} players)")
        room.players += 1
        self._reindex(room)
        return Seat(room.room_id)

    def release(self, room_id: str) -> None:
        """A player left (Leave) or their avatar expired: free one seat."""
        self._sweep()
        room = self._get(room_id)
        if room.players <= 0:
            raise InvalidState(f"room {room_id} has no player to release")
        room.players -= 1
        self._reindex(room)

    def hold_for_resume(self, room_id: str, player_id: str) -> None:
        """An abrupt disconnect: keep the player's seat for ``resume_seconds``.

        The seat stays counted. If the window passes without ``resume``, the sweep frees the
        seat and queues ``(room_id, player_id)`` for ``drain_expired_resumes`` (despawn).
        """
        now = self._sweep()
        room = self._get(room_id)
        if player_id in room.resume_holds or room.players <= len(room.resume_holds):
            raise InvalidState(f"player {player_id!r} has no connected seat in room {room_id}")
        room.resume_holds[player_id] = now + self.resume_seconds
        self._next_expiry = min(self._next_expiry, now + self.resume_seconds)

    def resume(self, room_id: str, player_id: str) -> Seat:
        """Resume: the dropped player takes their held seat back."""
        self._sweep()
        room = self._rooms.get(room_id) if isinstance(room_id, str) else None
        if room is None or room.resume_holds.pop(player_id, None) is None:
            raise ResumeDenied(f"no seat held for player {player_id!r} in room {room_id!r}")
        return Seat(room_id, held=True)

    def drain_expired_resumes(self) -> list[tuple[str, str]]:
        """``(room_id, player_id)`` whose resume window passed since the last drain; once."""
        self._sweep()
        expired = list(self._expired_resumes)
        self._expired_resumes.clear()
        return expired

    # --- server-side lifecycle -------------------------------------------------------------

    def close_room(self, room_id: str) -> bool:
        """Forget a room and its holds (empty past its grace, or shut down). False if unknown."""
        room = self._rooms.pop(room_id, None)
        if room is None:
            return False
        key = (room.region, room.game_mode)
        bucket = self._open.get(key)
        if bucket is not None:
            bucket.pop(room_id, None)
            if not bucket:
                del self._open[key]
        return True

    @property
    def open_buckets(self) -> int:
        """How many (region, game_mode) keys the open-room index holds (for tests/metrics)."""
        return len(self._open)

    def restore_room(
        self,
        room_id: str,
        region: str,
        game_mode: str,
        players: int,
        *,
        resumable_player_ids: Sequence[str] = (),
    ) -> None:
        """Register a room restored from a checkpoint with ``players`` seats taken.

        Each of ``resumable_player_ids`` (at most ``players``) gets a resume hold of
        ``resume_seconds`` from now, so those players can ``Resume`` after a server restart;
        if they do not, their seats free themselves and show up in ``drain_expired_resumes``.
        """
        if not ROOM_ID_PATTERN.fullmatch(room_id):
            raise InvalidState(f"restored room id {room_id!r} is not 8 chars [A-Za-z0-9]")
        if room_id in self._rooms:
            raise InvalidState(f"room {room_id} is already live")
        self._check_region(region)
        self._check_game_mode(game_mode)
        if type(players) is not int or not 0 <= players <= self.capacity:
            raise InvalidState(f"restored room {room_id} has {players!r} players")
        if (
            len(set(resumable_player_ids)) != len(resumable_player_ids)
            or len(resumable_player_ids) > players
        ):
            raise InvalidState(f"restored room {room_id}: resumable ids must be distinct seats")
        now = self._sweep()
        room = self._create(region, game_mode, room_id=room_id)
        room.players = players
        room.resume_holds = dict.fromkeys(resumable_player_ids, now + self.resume_seconds)
        if resumable_player_ids:
            self._next_expiry = min(self._next_expiry, now + self.resume_seconds)
        self._reindex(room)

    def room(self, room_id: str) -> RoomInfo:
        """The current row of one room (RoomNotFound if it is not live)."""
        self._sweep()
        return self._get(room_id).info()

    def rooms(self) -> list[RoomInfo]:
        """Every live room, oldest first."""
        self._sweep()
        return [room.info() for room in self._rooms.values()]

    # --- internals -------------------------------------------------------------------------

    def _sweep(self) -> float:
        """Drop expired party holds and resume holds; returns ``now`` for the caller."""
        now = self._clock()
        if now < self._next_expiry:
            return now
        self._next_expiry = float("inf")
        for room in self._rooms.values():
            if room.party_holds:
                room.party_holds = [hold for hold in room.party_holds if hold.expiry > now]
            if room.resume_holds:
                expired = [pid for pid, expiry in room.resume_holds.items() if expiry <= now]
                for player_id in expired:
                    del room.resume_holds[player_id]
                    room.players -= 1
                    self._expired_resumes.append((room.room_id, player_id))
            self._next_expiry = min(
                (
                    self._next_expiry,
                    *(hold.expiry for hold in room.party_holds),
                    *room.resume_holds.values(),
                )
            )
            self._reindex(room)
        return now

    def _reindex(self, room: _Room) -> None:
        """Keep ``room`` in its open bucket exactly when it has a free seat."""
        key = (room.region, room.game_mode)
        if room.occupied < room.capacity:
            self._open.setdefault(key, {})[room.room_id] = room
            return
        bucket = self._open.get(key)
        if bucket is not None:
            bucket.pop(room.room_id, None)
            if not bucket:
                del self._open[key]  # pruned: invented modes must not grow the index

    def _create(self, region: str, game_mode: str, room_id: str | None = None) -> _Room:
        if len(self._rooms) >= self.max_rooms:
            raise RoomFull(f"server is at its limit of {self.max_rooms} rooms")
        if room_id is None:
            room_id = self._new_room_id()
            while room_id in self._rooms:  # unique among live rooms; collisions are ~1e-10
                room_id = self._new_room_id()
        room = _Room(room_id, region, game_mode, self.capacity, next(self._serials))
        self._rooms[room_id] = room
        self._reindex(room)
        return room

    def _get(self, room_id: str) -> _Room:
        room = self._rooms.get(room_id) if isinstance(room_id, str) else None
        if room is None:
            raise RoomNotFound("room ID does not exist")
        return room

    def _check_region(self, region: str) -> None:
        if region not in self.regions:
            raise UnknownRegion(
                f"unknown region {region[:64]!r}; this server serves: " + ", ".join(self.regions)
            )

    def _check_party_size(self, party_size: int) -> None:
        if type(party_size) is not int or not 1 <= party_size <= min(MAX_PARTY_SIZE, self.capacity):
            raise BadRequest(
                f"party_size must be an integer 1..{MAX_PARTY_SIZE}, got {party_size!r}"
            )

    def _check_game_mode(self, game_mode: str) -> None:
        if not isinstance(game_mode, str) or not GAME_MODE_PATTERN.fullmatch(game_mode):
            raise BadRequest(f"game_mode must be 1-32 characters [A-Za-z0-9_-], got {game_mode!r}")
        if self.game_modes is not None and game_mode not in self.game_modes:
            raise BadRequest(
                f"game_mode {game_mode!r} is not served; this server serves: "
                + ", ".join(sorted(self.game_modes))
            )


# --- the backend seam: the lobby asks, a backend decides -----------------------------------


@dataclass(frozen=True, slots=True)
class Match:
    """A backend's answer to one FindOrCreate / JoinRoom / Resume.

    ``url is None``: the request is served on this node; for FindOrCreate/JoinRoom the seat is
    already taken in the local :class:`Matchmaker` and the room host seats the player in room
    ``room_id`` (building it from ``region``/``game_mode`` if it does not exist yet).
    Otherwise the room lives at ``url`` (WIRE.md A2): the lobby replies
    ``MatchResult{room_id, url, seat_token}`` and the client goes there.
    """

    room_id: str
    region: str
    game_mode: str
    url: str | None = None
    seat_token: bytes | None = None
    #: The room is new (a refused request may abandon it: ``RoomHost.abandon_new_room``).
    created: bool = False
    #: WIRE A4: opens the party's held seats (FindOrCreate with party_size > 1).
    party_token: bytes | None = None


class MatchmakingBackend(Protocol):
    """Where matchmaking decisions are made: in this process, or cluster-wide (Redis).

    The ``async`` requests are awaited by the lobby while the connection is in phase
    ``MATCHING``; refusals raise :class:`~astranet.errors.MatchmakingError` or ``BadRequest``.
    The synchronous notifications come from the room host (on the tick loop: they must not
    block) so a cluster backend can mirror them.
    """

    async def find_or_create(self, region: str, game_mode: str, party_size: int) -> Match: ...

    async def join_room(
        self, room_id: str, seat_token: bytes | None, party_token: bytes | None
    ) -> Match: ...

    async def route_resume(self, room_id: str) -> Match | None:
        """None: resume here (the room host checks the token); else redirect to ``url``."""

    def seats_released(self, room_id: str, seats: int) -> None: ...

    def room_closed(self, room_id: str) -> None: ...

    def has_holds(self, room_id: str) -> bool:
        """True while seats of ``room_id`` are held elsewhere (do not close it as empty)."""

    def rooms_json(self, tick: int) -> list[dict[str, object]]:
        """The ``GET /rooms`` rows this backend knows (cluster-wide for a cluster backend)."""

    def view_version(self) -> object:
        """Changes whenever ``rooms_json`` may have changed for reasons the server cannot see."""

    def install(self, server: Any) -> None:
        """Called once by the GameServer before start (add HTTP routes, metrics)."""

    async def start(self, server: Any) -> None:
        """After the ports are bound, before ``listening`` is logged (join the cluster)."""

    async def stop(self) -> None:
        """Shutdown: leave the cluster (its rooms go with it)."""


class InProcessMatchmaking:
    """The embedded default: the local :class:`Matchmaker` decides (exactly v1 behaviour).

    No call awaits anything, so every decision is still loop-atomic.
    """

    def __init__(self, matchmaker: Matchmaker) -> None:
        self.matchmaker = matchmaker

    async def find_or_create(self, region: str, game_mode: str, party_size: int) -> Match:
        seat = self.matchmaker.find_or_create(region, game_mode, party_size)
        return Match(
            seat.room_id, region, game_mode, created=seat.created, party_token=seat.party_token
        )

    async def join_room(
        self, room_id: str, seat_token: bytes | None, party_token: bytes | None
    ) -> Match:
        if seat_token is not None:  # only a cluster issues seat tokens
            raise SeatExpired("seat token is wrong, used or expired")
        self.matchmaker.join_room(room_id, party_token)
        info = self.matchmaker.room(room_id)
        return Match(room_id, info.region, info.game_mode)

    async def route_resume(self, room_id: str) -> Match | None:
        return None

    def seats_released(self, room_id: str, seats: int) -> None:
        pass

    def room_closed(self, room_id: str) -> None:
        pass

    def has_holds(self, room_id: str) -> bool:
        return False

    def rooms_json(self, tick: int) -> list[dict[str, object]]:
        return [info.as_json(tick) for info in self.matchmaker.rooms()]

    def view_version(self) -> object:
        return 0

    def install(self, server: Any) -> None:
        pass

    async def start(self, server: Any) -> None:
        pass

    async def stop(self) -> None:
        pass
