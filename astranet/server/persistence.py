"""Durable rooms for the game server: the ``Persistence`` hooks backed by ``astranet.storage``.

What: :class:`StoragePersistence` implements :class:`astranet.server.hooks.Persistence` on top of
a :class:`~astranet.storage.StorageWriter`, so every hook is a non-blocking ``submit_*`` on the
tick loop and the disk work (checkpoint encoding included) runs on the writer's thread. Any
:class:`~astranet.storage.Storage` backend works (``StoragePersistence.open(factory)``);
:func:`open_sqlite_persistence` is the default, one SQLite file (``--db``).

What is written, and when:
    room created / closed           a RoomRecord / its ``closed_at``
    player joined / left            a PlayerRecord (token *hash* only) / its ``left_at``
    every checkpoint interval       each room's ``ColumnStore.export_state()`` plus ROOM_META_KEY
      and on graceful shutdown      (next snapshot id), and one batch of ``last_input_seq``
                                    (the highest seq the simulation *applied*, matching the state)

Restore (crash recovery, at start before listening): every open room whose last checkpoint
loads is rebuilt (``Room`` -> ``game.setup`` -> ``store.import_state`` replaces setup's
entities), its seated players whose avatar is in the checkpoint get their seat back, held for
the resume window. Numbering never goes backwards for a client that saw the old process, and
no clock is involved (the old process may have run on another machine, or its clock may have
been wrong): each checkpoint records a *reserved block* of ``reserve`` ticks -- the old
process promises to step the room at most ``reserve`` ticks past a checkpoint before the next
one is written (it checkpoints every interval, far more often than the block lasts; one capture
per tick, so snapshot ids advance by at most as much). A restored room starts its ticks at
``tick + reserve + 1`` and its snapshot ids at ``next_snapshot_id + reserve + 1``: above
anything the old process sent, whenever and wherever it ran. Each restore spends one block of
the u32 id space (RESERVE_S of ticks, ~1 800 ids at 30 Hz: millions of restores).
Dropped on restore (logged, recorded in storage):
rooms without a checkpoint or of a region/mode this server no longer serves, and players who
joined after the last checkpoint (their avatar is not in it).

esper-side entities: only replicated columns are checkpointed. ``game.setup`` recreates the
room's processors and its own entities; for each restored player the game's optional
``restore_player(sim, player_id, net_id)`` hook is called, else a ``NetEntity(net_id)`` tag is
created (what ``Game.despawn_player`` looks for). ``NetEntity`` tags whose net id is not in the
restored store (setup's entities that the checkpoint had despawned) are deleted.

Errors: an unusable database, or a checkpoint that does not match this game's schema, is a
:class:`~astranet.errors.StorageError` naming the location (the CLI exits 2); nothing is reset.
A record write refused by a full queue is logged and counted (``records_refused``), never
raised into the tick: the game goes on, that seat is just not durable.
Limits: one writer thread (see astranet.storage.writer: MAX_PENDING_JOBS, coalescing).
Benchmark: benchmarks/checkpoint_overhead.py (tick p99 with checkpoints on vs off).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import esper
import numpy as np

from astranet.ecs import NetEntity
from astranet.errors import AstranetError, StorageError
from astranet.replication.snapshot import MAX_SNAPSHOT_ID
from astranet.server.matchmaking import DEFAULT_CAPACITY
from astranet.server.room import Player, Room
from astranet.storage import (
    Checkpoint,
    PlayerRecord,
    RoomRecord,
    SQLiteStorage,
    Storage,
    StorageWriter,
)

if TYPE_CHECKING:
    from astranet.server.app import GameServer

__all__ = [
    "RESERVE_S",
    "ROOM_META_KEY",
    "ROOM_META_VERSION",
    "RestoreSummary",
    "StoragePersistence",
    "continuation",
    "open_sqlite_persistence",
    "reserved_ticks",
]

log = logging.getLogger("astranet.server.persistence")

#: Extra key in each checkpoint's state: int64
#: ``[ROOM_META_VERSION, next_snapshot_id, reserved_ticks]`` (v1 had no reservation).
ROOM_META_KEY = "__room__"
ROOM_META_VERSION = 2
#: Seconds of ticks a checkpoint reserves (at least RESERVE_INTERVALS checkpoint intervals).
#: A room whose storage is down longer than this keeps playing, but a restore after that
#: could number below what its clients saw (logged once per room when it happens).
RESERVE_S = 60.0
RESERVE_INTERVALS = 4
#: Block assumed for a v1 checkpoint (written before reservations): the same 60 s at 30 Hz.
LEGACY_RESERVED_TICKS = 1800


@dataclass(frozen=True, slots=True)
class RestoreSummary:
    """What the last :meth:`StoragePersistence.restore` did (also logged)."""

    rooms: int = 0
    players: int = 0
    rooms_dropped: int = 0
    players_dropped: int = 0
    first_tick: int = 0  # the server tick the restored server steps first


@dataclass(frozen=True, slots=True)
class _Restored:
    room: Room | None  # None: dropped
    first_tick: int
    players: int
    players_dropped: int


class StoragePersistence:
    """The server's persistence hooks on a StorageWriter. Create with :meth:`open`."""

    def __init__(
        self,
        writer: StorageWriter,
        *,
        checkpoint_interval: float = 1.0,
        location: str = "storage",
        restore_on_start: bool = True,
    ) -> None:
        if not math.isfinite(checkpoint_interval) or checkpoint_interval < 0:
            raise StorageError(f"checkpoint_interval must be >= 0 s, got {checkpoint_interval!r}")
        self.writer = writer
        #: Seconds between checkpoints (0: only on graceful shutdown).
        self.checkpoint_interval = checkpoint_interval
        self.location = location  # named in every error ("astranet.db", "redis://...")
        self.capacity = DEFAULT_CAPACITY  # replaced by the server's matchmaker's in restore()
        self.records_refused = 0
        self.summary = RestoreSummary()
        #: False in cluster mode: rooms are restored one by one on demand (restore_room).
        self.restore_on_start = restore_on_start

    @classmethod
    async def open(
        cls,
        open_storage: Callable[[], Storage],
        *,
        checkpoint_interval: float = 1.0,
        location: str = "storage",
        restore_on_start: bool = True,
    ) -> StoragePersistence:
        """Start the writer thread and open the backend on it (StorageError if unusable)."""
        writer = await StorageWriter.start(open_storage)
        return cls(
            writer,
            checkpoint_interval=checkpoint_interval,
            location=location,
            restore_on_start=restore_on_start,
        )

    # -- the hooks (loop thread; never block) ----------------------------------------------

    def room_created(self, room: Room) -> None:
        record = RoomRecord(room.room_id, room.region, room.game_mode, self.capacity, time.time())
        self._submit_record(f"room {room.room_id}", lambda: self.writer.submit_room(record))

    def room_closed(self, room: Room) -> None:
        closed_at = time.time()
        self._submit_record(
            f"close of room {room.room_id}",
            lambda: self.writer.submit_close_room(room.room_id, closed_at),
        )

    def player_joined(self, room: Room, player: Player) -> None:
        record = PlayerRecord(
            player.player_id, room.room_id, player.net_id, player.token_hash, time.time()
        )
        self._submit_record(f"player {player.player_id}", lambda: self.writer.submit_player(record))

    def player_left(self, room: Room, player: Player) -> None:
        self._submit_departure(player.player_id, time.time())

    def checkpoint(self, rooms: list[Room], tick: int) -> None:
        """Queue every room's state at its own tick and the players' applied seqs (copied now).

        ``tick`` is the server tick; a room restored from another node numbers its ticks with
        an offset (``Room.tick_offset``), so each checkpoint records the room's own tick.
        """
        saved_at = time.time()
        seqs: dict[str, int] = {}
        for room in rooms:
            state = room.store.export_state()
            reserve = reserved_ticks(self.checkpoint_interval, room.tick_hz)
            state[ROOM_META_KEY] = np.array(
                [ROOM_META_VERSION, room.history.next_id, reserve], dtype=np.int64
            )
            # A dropped checkpoint (queue full) leaves the previous one valid; the writer
            # counts it, and the next interval retries.
            # export_state's arrays are fresh copies: the writer need not copy them again.
            checkpoint = Checkpoint(room.room_id, room.tick, saved_at, state)
            self.writer.submit_checkpoint(checkpoint, copy=False)
            for player in room.players.values():
                if player.inputs.last_input_seq is not None:
                    seqs[player.player_id] = player.inputs.last_input_seq
        # Queued after the checkpoints: a crash between the two leaves the seq behind the
        # state, never ahead of it (the replay guard then only admits newer frames anyway).
        self.writer.submit_last_input_seqs(seqs)

    def counters(self) -> dict[str, int]:
        """The writer's counters, for ``/metrics`` (``astranet_storage{stat=...}``)."""
        writer = self.writer
        return {
            "checkpoints_written": writer.checkpoints_written,
            "checkpoints_coalesced": writer.checkpoints_coalesced,
            "checkpoints_dropped": writer.checkpoints_dropped,
            "writes_failed": writer.writes_failed,
            "writes_retried": writer.writes_retried,
            "writes_retrying": writer.writes_retrying,
            "writes_lost": writer.writes_lost,
            "writes_fenced": writer.writes_fenced,
            "records_refused": self.records_refused,
            "seq_batches_dropped": writer.seq_batches_dropped,
            "pending_jobs": writer.pending_jobs,
        }

    async def close(self) -> None:
        """Flush every queued write (the shutdown checkpoint) and close the backend."""
        try:
            await self.writer.close()
        except StorageError as exc:
            raise StorageError(f"{self.location}: {exc}") from exc

    def _submit_record(self, what: str, submit: Callable[[], None]) -> None:
        try:
            submit()
        except StorageError as exc:  # WriteQueueFull: the disk is far behind
            self.records_refused += 1
            log.error("%s: %s not saved: %s", self.location, what, exc)

    # -- crash recovery --------------------------------------------------------------------

    async def restore(self, server: GameServer) -> None:
        """Rebuild open rooms and held seats from storage (before the server listens).

        Skipped when ``restore_on_start`` is False (cluster mode: the store is shared, and a
        room is restored on demand by the node its players resume on, see :meth:`restore_room`).
        """
        self.capacity = server.matchmaker.capacity
        if not self.restore_on_start:
            return
        now = time.time()
        rooms = players = rooms_dropped = players_dropped = 0
        first_tick = server.tick_offset
        for record in await self.writer.open_rooms():
            outcome = await self._restore_record(server, record, now)
            players_dropped += outcome.players_dropped
            if outcome.room is None:
                rooms_dropped += 1
                continue
            first_tick = max(first_tick, outcome.first_tick)
            rooms += 1
            players += outcome.players
        server.tick_offset = server.tick = first_tick
        self.summary = RestoreSummary(rooms, players, rooms_dropped, players_dropped, first_tick)
        if rooms or rooms_dropped:
            log.info(
                "restored %d room(s) and %d held seat(s) from %s; ticks continue from %d "
                "(dropped %d room(s), %d seat(s))",
                rooms,
                players,
                self.location,
                first_tick,
                rooms_dropped,
                players_dropped,
            )

    async def restore_room(self, server: GameServer, room_id: str) -> Room | None:
        """Restore one room on a running server (failover: this node just claimed it).

        Its seated players get held seats (the resume window starts now); its ticks continue
        above the checkpoint's reserved block through ``Room.tick_offset``, so the server's
        other rooms keep their numbering. None when the room has no record or no checkpoint.
        """
        self.capacity = server.matchmaker.capacity
        if room_id in server.rooms:  # restored already (never build a room twice)
            return server.rooms[room_id]
        record = await self.writer.room(room_id)
        if record is None or record.closed_at is not None:
            return None
        if room_id in server.rooms:  # restored meanwhile, during the awaits above
            return server.rooms[room_id]
        outcome = await self._restore_record(server, record, time.time())
        room = outcome.room
        if room is None:
            return None
        # The next server tick is server.tick + 1; the room's own tick must reach first_tick.
        room.tick_offset = max(0, outcome.first_tick - (server.tick + 1))
        log.info(
            "restored room %s from %s with %d held seat(s); its ticks continue from %d",
            room_id,
            self.location,
            outcome.players,
            outcome.first_tick,
        )
        return room

    async def _restore_record(
        self, server: GameServer, record: RoomRecord, now: float
    ) -> _Restored:
        checkpoint = await self.writer.load_checkpoint(record.room_id)
        seated = [p for p in await self.writer.players_in_room(record.room_id) if p.left_at is None]
        if checkpoint is None:
            log.warning(
                "room %s has no checkpoint; closing it (its %d player(s) cannot resume)",
                record.room_id,
                len(seated),
            )
            self._drop_room(record.room_id, seated, now)
            return _Restored(None, 0, 0, len(seated))
        room, first_tick = self._rebuild_room(server, record, checkpoint)
        kept = [
            p
            for p in seated
            if p.entity_net_id is not None and bool(room.store.contains([p.entity_net_id])[0])
        ]
        for gone in (p for p in seated if p not in kept):
            log.warning(
                "player %s joined room %s after its last checkpoint; seat dropped",
                gone.player_id,
                record.room_id,
            )
            self._submit_departure(gone.player_id, now)
        dropped = len(seated) - len(kept)
        try:
            server.matchmaker.restore_room(
                record.room_id,
                record.region,
                record.game_mode,
                len(kept),
                resumable_player_ids=[p.player_id for p in kept],
            )
        except AstranetError as exc:  # region/mode no longer served, over capacity...
            log.warning("cannot restore room %s here (%s); closing it", record.room_id, exc)
            room.close()
            self._drop_room(record.room_id, kept, now)
            return _Restored(None, 0, 0, dropped + len(kept))
        for player in kept:
            self._reseat(room, player)
        server.rooms[record.room_id] = room
        return _Restored(room, first_tick, len(kept), dropped)

    def _rebuild_room(
        self, server: GameServer, record: RoomRecord, checkpoint: Checkpoint
    ) -> tuple[Room, int]:
        """The room as checkpointed, numbering above the checkpoint's reserved block; returns
        it with the first tick it may step."""
        room = Room(
            record.room_id,
            record.region,
            record.game_mode,
            server.game,
            tick_hz=server.config.tick_hz,
        )
        try:
            room.store.import_state(dict(checkpoint.state))  # replaces setup's entities
            first_tick, next_id = continuation(checkpoint)
        except StorageError as exc:
            room.close()
            raise StorageError(
                f"{self.location}: checkpoint of room {record.room_id} cannot be restored "
                f"into game {server.game.name!r}: {exc}; start with another --db or the game "
                f"that wrote it"
            ) from exc
        # Snapshot ids must exceed every id the old process sent (Replica ignores lower ids).
        room.history.resume_from(next_id)
        room.tick = room.sim.tick = checkpoint.tick
        with room.activated():
            live = room.store.contains  # drop setup's tags for entities the checkpoint lacks
            stale = [
                entity
                for entity, tag in esper.get_component(NetEntity)
                if not bool(live([tag.net_id])[0])
            ]
            for entity in stale:
                esper.delete_entity(entity, immediate=True)
        return room, first_tick

    def _reseat(self, room: Room, record: PlayerRecord) -> None:
        assert record.entity_net_id is not None  # filtered by the caller
        room.restore_player(
            record.player_id, record.entity_net_id, record.resume_token_hash, record.last_input_seq
        )
        with room.activated():
            hook = getattr(room.game, "restore_player", None)
            if callable(hook):
                hook(room.sim, record.player_id, record.entity_net_id)
            else:
                esper.create_entity(NetEntity(record.entity_net_id))

    def _submit_departure(self, player_id: str, left_at: float) -> None:
        self._submit_record(
            f"departure of player {player_id}",
            lambda: self.writer.submit_player_left(player_id, left_at),
        )

    def _drop_room(self, room_id: str, seated: list[PlayerRecord], now: float) -> None:
        for player in seated:
            self._submit_departure(player.player_id, now)
        self._submit_record(
            f"close of room {room_id}", lambda: self.writer.submit_close_room(room_id, now)
        )


def reserved_ticks(checkpoint_interval: float, tick_hz: int) -> int:
    """Ticks one checkpoint reserves: RESERVE_S, or RESERVE_INTERVALS intervals if longer."""
    return math.ceil(max(RESERVE_S, RESERVE_INTERVALS * checkpoint_interval) * tick_hz)


def continuation(checkpoint: Checkpoint) -> tuple[int, int]:
    """``(first_tick, next_snapshot_id)`` for a room restored from ``checkpoint``: just above
    the block of ticks and ids its writer reserved. No clock is read (see the module doc)."""
    meta = checkpoint.state.get(ROOM_META_KEY)
    version = int(meta[0]) if meta is not None and meta.ndim == 1 and len(meta) >= 2 else None
    if version == 1 and meta is not None and meta.shape == (2,):
        next_id, reserve = int(meta[1]), LEGACY_RESERVED_TICKS
    elif version == ROOM_META_VERSION and meta is not None and meta.shape == (3,):
        next_id, reserve = int(meta[1]), int(meta[2])
    else:
        raise StorageError(f"checkpoint has no version-{ROOM_META_VERSION} {ROOM_META_KEY!r}")
    if not 1 <= next_id <= MAX_SNAPSHOT_ID or reserve < 0:
        raise StorageError(
            f"checkpoint's next snapshot id {next_id} / reserve {reserve} is out of range"
        )
    if next_id + reserve + 1 > MAX_SNAPSHOT_ID:
        raise StorageError(
            f"room {checkpoint.room_id}: snapshot id space (u32) exhausted by restores "
            f"(next id {next_id} + reserve {reserve}); the room cannot continue numbering"
        )
    return checkpoint.tick + reserve + 1, next_id + reserve + 1


async def open_sqlite_persistence(
    db_path: str | Path, *, checkpoint_interval: float = 1.0
) -> StoragePersistence:
    """The default persistence: one SQLite file (created if missing; StorageError if unusable)."""
    path = Path(db_path)
    return await StoragePersistence.open(
        lambda: SQLiteStorage(path), checkpoint_interval=checkpoint_interval, location=str(path)
    )
