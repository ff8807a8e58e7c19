"""The seam between the game server and durable storage.

The game server calls these hooks at each change worth surviving a crash; every call is
synchronous and must return at once (queue the write, never touch the disk on the tick loop).
:class:`NoPersistence` is the do-nothing default of an in-process game server (tests that need
no database). The real implementation is
:class:`astranet.server.persistence.StoragePersistence` (any ``astranet.storage.Storage``
backend on the off-loop writer thread); ``astranet-server`` builds it from ``--db`` and
``--checkpoint-interval`` with ``open_sqlite_persistence``.

When the server calls what: ``restore`` once in ``start()`` before listening (it may add rooms
to ``server.rooms``, seats to ``server.matchmaker`` and set ``server.tick_offset``);
``room_created``/``room_closed`` and ``player_joined``/``player_left`` as they happen (a player
whose resume window expires counts as left; a graceful shutdown closes no room, so rooms
restore on the next start); ``checkpoint`` every ``checkpoint_interval`` seconds of ticks and
once more in ``shutdown()``, followed by ``close``.
Limits: none here (a protocol); benchmark: benchmarks/checkpoint_overhead.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from astranet.game import Game
    from astranet.server.config import ServerConfig
    from astranet.server.matchmaking import Matchmaker
    from astranet.server.room import Player, Room

__all__ = ["NoPersistence", "Persistence", "RestoreTarget"]


class RestoreTarget(Protocol):
    """What ``Persistence.restore`` may read and fill in (the game server implements it)."""

    config: ServerConfig
    game: Game
    matchmaker: Matchmaker
    #: Live rooms by id; restore adds the rooms it rebuilds.
    rooms: dict[str, Room]
    #: The server's current tick (``tick_offset`` + ticks run).
    tick: int
    #: Added to the tick loop's count; restore sets it above the predecessor's last tick.
    tick_offset: int


class Persistence(Protocol):
    """What the server tells storage. All methods but ``restore``/``close`` are synchronous."""

    #: Seconds between checkpoints of every room (``--checkpoint-interval``); 0 disables.
    checkpoint_interval: float

    async def restore(self, server: RestoreTarget) -> None:
        """At start-up, before listening: recreate open rooms and held seats from storage."""

    def room_created(self, room: Room) -> None: ...

    def room_closed(self, room: Room) -> None: ...

    def player_joined(self, room: Room, player: Player) -> None: ...

    def player_left(self, room: Room, player: Player) -> None: ...

    def checkpoint(self, rooms: list[Room], tick: int) -> None:
        """Queue a checkpoint of every room (state copied now, written off the loop)."""

    async def close(self) -> None:
        """Flush everything queued (graceful shutdown) and release the database."""

    def counters(self) -> Mapping[str, int]:
        """Cumulative counts and queue depth for ``/metrics`` (read once a second)."""


class NoPersistence:
    """Keeps nothing: for tests and throwaway servers."""

    checkpoint_interval = 0.0

    async def restore(self, server: RestoreTarget) -> None:
        return None

    def room_created(self, room: Room) -> None:
        return None

    def room_closed(self, room: Room) -> None:
        return None

    def player_joined(self, room: Room, player: Player) -> None:
        return None

    def player_left(self, room: Room, player: Player) -> None:
        return None

    def checkpoint(self, rooms: list[Room], tick: int) -> None:
        return None

    async def close(self) -> None:
        return None

    def counters(self) -> Mapping[str, int]:
        return {}
