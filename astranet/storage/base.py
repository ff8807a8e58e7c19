"""The storage interface: records and the ``Storage`` protocol every backend implements.

What: three plain frozen records (:class:`RoomRecord`, :class:`PlayerRecord`,
:class:`Checkpoint`) and a small synchronous :class:`Storage` protocol. The server only
talks to this protocol (through :class:`astranet.storage.writer.StorageWriter`, which
moves every call off the tick loop), so a networked backend such as Redis can replace
:class:`astranet.storage.sqlite.SQLiteStorage` without the server changing.

Resume tokens are secrets: backends store ``hash_resume_token(token)`` (SHA-256) and
compare with :func:`token_matches` (constant time). The plaintext never reaches a backend.

Times are Unix seconds as ``float`` (``time.time()``); ``tick`` is the server tick (int).

Limits: records validate cheap invariants only (types of ids, hash length, capacity);
they do not check that a room exists — the backend does.
Benchmark: none here (pure data); see ``astranet/storage/sqlite.py``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from astranet.errors import StorageError

__all__ = [
    "RESUME_TOKEN_HASH_BYTES",
    "Checkpoint",
    "FencedOut",
    "PlayerRecord",
    "RoomRecord",
    "Storage",
    "check_seqs",
    "hash_resume_token",
    "storage_errors",
    "token_matches",
]

# SHA-256 digest size; a stored hash of any other length is a bug, not a token.
RESUME_TOKEN_HASH_BYTES = 32
# Largest value of the u32 ``seq`` field of InputFrame (WIRE.md).
MAX_INPUT_SEQ = 2**32 - 1


class FencedOut(StorageError):
    """A write for a room this node no longer owns was refused (another node took it over).

    Raised by a fenced backend (``astranet.storage.redis`` in cluster mode); nothing of the
    write was stored. ``room_id`` names the room so the server can close its stale sessions.
    """

    def __init__(self, room_id: str, message: str) -> None:
        super().__init__(message)
        self.room_id = room_id


def check_seqs(seqs: Mapping[str, int]) -> None:
    """Refuse (StorageError) a ``last_input_seq`` batch with a value that is not a u32."""
    for player_id, seq in seqs.items():
        if not isinstance(seq, int) or not 0 <= seq <= MAX_INPUT_SEQ:
            raise StorageError(f"last_input_seq of {player_id!r} must be a u32, got {seq!r}")


@contextmanager
def storage_errors(
    where: str, *, closed: bool, doing: str, errors: type[Exception]
) -> Iterator[None]:
    """A backend's one error rule: refuse once closed; a driver's ``errors`` become a
    StorageError naming ``where`` (the file or the server) and what was being done."""
    if closed:
        raise StorageError(f"{where}: storage is closed")
    try:
        yield
    except errors as exc:
        raise StorageError(f"{where}: {doing} failed: {exc}") from exc


def hash_resume_token(token: bytes) -> bytes:
    """Return the value a backend stores for ``token``: its SHA-256 digest.

    Tokens are random server-issued bytes (not passwords), so a plain fast hash is
    enough: it keeps a stolen database from yielding usable tokens.
    """
    if not isinstance(token, bytes | bytearray | memoryview):
        raise StorageError(f"resume token must be bytes, got {type(token).__name__}")
    return hashlib.sha256(token).digest()


def token_matches(stored_hash: bytes, token: bytes) -> bool:
    """True when ``token`` hashes to ``stored_hash``; compared in constant time."""
    return hmac.compare_digest(stored_hash, hash_resume_token(token))


def _require_str(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise StorageError(f"{name} must be a non-empty str, got {value!r}")


def _require_optional_time(name: str, value: object) -> None:
    if value is not None and not isinstance(value, int | float):
        raise StorageError(f"{name} must be a Unix time in seconds or None, got {value!r}")


@dataclass(frozen=True, slots=True)
class RoomRecord:
    """A room as stored: identity, matchmaking keys and lifetime."""

    room_id: str
    region: str
    game_mode: str
    capacity: int
    created_at: float
    closed_at: float | None = None

    def __post_init__(self) -> None:
        _require_str("room_id", self.room_id)
        _require_str("region", self.region)
        _require_str("game_mode", self.game_mode)
        if not isinstance(self.capacity, int) or self.capacity < 1:
            raise StorageError(f"capacity must be a positive int, got {self.capacity!r}")
        _require_optional_time("created_at", self.created_at)
        _require_optional_time("closed_at", self.closed_at)


@dataclass(frozen=True, slots=True)
class PlayerRecord:
    """A player's seat in a room; ``left_at`` is None while the seat is held."""

    player_id: str
    room_id: str
    entity_net_id: int | None
    resume_token_hash: bytes
    joined_at: float
    left_at: float | None = None
    last_input_seq: int | None = None

    def __post_init__(self) -> None:
        _require_str("player_id", self.player_id)
        _require_str("room_id", self.room_id)
        if self.entity_net_id is not None and not isinstance(self.entity_net_id, int):
            raise StorageError(f"entity_net_id must be int or None, got {self.entity_net_id!r}")
        if (
            not isinstance(self.resume_token_hash, bytes)
            or len(self.resume_token_hash) != RESUME_TOKEN_HASH_BYTES
        ):
            # Guards against storing the plaintext token by mistake.
            raise StorageError(
                "resume_token_hash must be the 32-byte hash_resume_token(token), not the token"
            )
        _require_optional_time("joined_at", self.joined_at)
        _require_optional_time("left_at", self.left_at)
        if self.last_input_seq is not None and not (
            isinstance(self.last_input_seq, int) and 0 <= self.last_input_seq <= MAX_INPUT_SEQ
        ):
            raise StorageError(f"last_input_seq must be a u32 or None, got {self.last_input_seq!r}")


@dataclass(frozen=True, slots=True, eq=False)
class Checkpoint:
    """A room's replicated state at one tick.

    ``state`` maps column names to 1-D or 2-D numeric/bool arrays (see
    :mod:`astranet.storage.checkpoint` for what the codec accepts). Equality is not
    defined (arrays compare element-wise); compare ``tick`` and arrays explicitly.
    """

    room_id: str
    tick: int
    saved_at: float
    state: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require_str("room_id", self.room_id)
        if not isinstance(self.tick, int) or self.tick < 0:
            raise StorageError(f"tick must be a non-negative int, got {self.tick!r}")
        _require_optional_time("saved_at", self.saved_at)


@runtime_checkable
class Storage(Protocol):
    """Synchronous persistence of rooms, players and checkpoints.

    Every method either completes durably (per the backend's documented guarantee)
    or raises :class:`astranet.errors.StorageError`. Methods are called from one
    thread at a time (the writer thread); a backend need not be thread-safe.
    """

    def save_room(self, room: RoomRecord) -> None:
        """Insert or replace ``room``."""
        ...

    def close_room(self, room_id: str, closed_at: float) -> None:
        """Mark a room closed; it no longer appears in :meth:`open_rooms`."""
        ...

    def open_rooms(self) -> list[RoomRecord]:
        """Rooms not yet closed, oldest first (what a restarting server restores)."""
        ...

    def room(self, room_id: str) -> RoomRecord | None:
        """One room's record, open or closed; None when there is no such room."""
        ...

    def save_player(self, player: PlayerRecord) -> None:
        """Insert or update (by ``player_id``) a player; its room must exist."""
        ...

    def player_left(self, player_id: str, left_at: float) -> None:
        """Record that a player's seat was freed."""
        ...

    def players_in_room(self, room_id: str) -> list[PlayerRecord]:
        """Every player ever seated in ``room_id`` (left or not), by join time."""
        ...

    def update_last_input_seq(self, seqs: Mapping[str, int]) -> None:
        """Set ``last_input_seq`` for many players at once (unknown ids are ignored)."""
        ...

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Atomically replace the room's checkpoint unless the stored one has a later tick."""
        ...

    def load_checkpoint(self, room_id: str) -> Checkpoint | None:
        """The room's latest checkpoint, or None when it has none."""
        ...

    def backup(self, path: str | Path) -> None:
        """Write a consistent copy of the whole store to ``path`` while staying online."""
        ...

    def close(self) -> None:
        """Release the backend; further calls are errors."""
        ...
