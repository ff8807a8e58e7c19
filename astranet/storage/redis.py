"""Redis backend of :class:`astranet.storage.base.Storage`: one store shared by many nodes.

What: the same records as :class:`~astranet.storage.sqlite.SQLiteStorage` (rooms, players with
their resume-token *hash*, one checkpoint per room in the same ``encode_checkpoint`` blob
format), kept in a real ``redis-server`` so that any node of a cluster can restore a room whose
node died (WIRE.md A3). It runs on the :class:`~astranet.storage.writer.StorageWriter` thread
with redis-py's blocking client, like SQLite does; the tick loop never waits on Redis.

Keys (``prefix`` defaults to ``astranet:store:``; all documented in ``docs/storage.md``)::

    {p}room:{id}            hash   region game_mode capacity created_at [closed_at]
    {p}rooms:open           zset   room_id scored by created_at (what open_rooms lists)
    {p}room:{id}:players    zset   player_id scored by joined_at
    {p}player:{pid}         hash   room_id entity_net_id resume_token_hash joined_at
                                   [left_at] [last_input_seq]
    {p}checkpoint:{id}      hash   tick saved_at blob
    {p}room:{id}:owner      hash   node epoch  (astranet.cluster.ownership; fencing below)

Atomicity: every write is one Lua script (``EVALSHA``), so it is all-or-nothing and ordered
against every other node's writes; a late checkpoint with an older tick never replaces a newer
one (same rule as SQLite). A player or checkpoint for an unknown room, and ``close_room`` /
``player_left`` of an unknown id, raise :class:`StorageError` (SQLite's foreign keys).

Fencing (cluster mode): with a :class:`Fence`, every room-scoped write carries this node's id and
the epoch it holds for the room, and the script refuses it unless ``{p}room:{id}:owner`` still
names this node with that epoch; the refusal is :class:`~astranet.storage.base.FencedOut`. A
node that was paused while another node took its room over therefore writes nothing.
``save_room`` of a new room claims it (epoch 1, or the next epoch) in the same script.
Without a fence (``--store redis`` on a single node) nothing is checked.

Durability: what the Redis server's persistence gives (``appendonly yes`` + ``appendfsync
everysec`` is close to SQLite's ``synchronous=NORMAL``; see docs/storage.md). Closed rooms
expire after CLOSED_ROOM_TTL_S with their players and checkpoint, so the store does not grow
without bound (Colyseus #850).
Backup: ``backup(path)`` writes an SQLite astranet database (``SQLiteStorage(path)`` opens it),
so a single node can be started from a copy of a cluster's store.
Limits: SOCKET_TIMEOUT_S per command; keys are computed inside the scripts, which is fine for a
single Redis server (not Redis Cluster). Benchmark: see ``docs/storage.md``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import redis

from astranet.errors import StorageError
from astranet.storage.base import (
    Checkpoint,
    FencedOut,
    PlayerRecord,
    RoomRecord,
    check_seqs,
    storage_errors,
)
from astranet.storage.checkpoint import decode_checkpoint, encode_checkpoint

__all__ = ["CLOSED_ROOM_TTL_S", "DEFAULT_PREFIX", "Fence", "RedisStorage"]

log = logging.getLogger(__name__)

# Under the cluster directory's namespace (``astranet:room:{id}`` is its entry, not ours).
DEFAULT_PREFIX = "astranet:store:"
# A command that takes longer than this means Redis is gone or swamped; the writer logs the
# failure and goes on (the next checkpoint retries), it must not hang for minutes.
SOCKET_TIMEOUT_S = 5.0
# A closed room (and its players and checkpoint) is kept a day for inspection, then expires.
CLOSED_ROOM_TTL_S = 24 * 3600

# Shared by every script: is this write still allowed for (room, node, epoch)?
# node == "" means "no fencing" (a single node on Redis). ``refusal`` is the guard of a
# room-scoped write whose last two ARGV are (node, epoch): 0 when the room does not exist,
# {'fenced', owner_node, owner_epoch} when another node owns it, else nil (go on).
_FENCE_LUA = """
local function fenced(owner_key, node, epoch)
  if node == '' then return false end
  local owner = redis.call('HMGET', owner_key, 'node', 'epoch')
  if owner[1] == node and owner[2] == epoch then return false end
  return {owner[1] or '', owner[2] or '0'}
end
local function refusal(room_key, owner_key)
  if room_key and redis.call('EXISTS', room_key) == 0 then return 0 end
  local refused = fenced(owner_key, ARGV[#ARGV - 1], ARGV[#ARGV])
  if refused then return {'fenced', refused[1], refused[2]} end
  return nil
end
"""


def _guarded(room_key: str, owner_key: str, body: str) -> str:
    """A room-scoped write script: ``body`` runs only when ``refusal`` lets it (Lua key names)."""
    guard = (
        f"local refused = refusal({room_key}, {owner_key})\nif refused then return refused end\n"
    )
    return _FENCE_LUA + guard + body.lstrip("\n")


# KEYS: room, rooms:open, owner. ARGV: room_id, region, game_mode, capacity, created_at,
# closed_at ('' = open), node, ttl. Returns the epoch this node now holds (0 without fencing),
# or {'fenced', owner_node, owner_epoch}.
_SAVE_ROOM = """
local node = ARGV[7]
local epoch = 0
if node ~= '' then
  local owner = redis.call('HMGET', KEYS[3], 'node', 'epoch')
  if owner[1] and owner[1] ~= node then
    return {'fenced', owner[1], owner[2] or '0'}
  end
  if owner[1] == node then
    epoch = tonumber(owner[2])
  else
    epoch = redis.call('HINCRBY', KEYS[3], 'epoch', 1)
    redis.call('HSET', KEYS[3], 'node', node)
  end
end
redis.call('HSET', KEYS[1], 'region', ARGV[2], 'game_mode', ARGV[3], 'capacity', ARGV[4],
           'created_at', ARGV[5])
if ARGV[6] == '' then
  redis.call('HDEL', KEYS[1], 'closed_at')
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
  redis.call('PERSIST', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'closed_at', ARGV[6])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[8])
end
return epoch
"""

# KEYS: room, rooms:open, owner, room:players, checkpoint. ARGV: room_id, closed_at, ttl, node,
# epoch. Returns 1, 0 (no such room) or the fence refusal.
_CLOSE_ROOM = _guarded(
    "KEYS[1]",
    "KEYS[3]",
    """
redis.call('HSET', KEYS[1], 'closed_at', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
local ttl = ARGV[3]
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[5], ttl)
local prefix = string.sub(KEYS[4], 1, string.len(KEYS[4]) - string.len('room:' .. ARGV[1] ..
  ':players'))
for _, pid in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  redis.call('EXPIRE', prefix .. 'player:' .. pid, ttl)
end
redis.call('EXPIRE', KEYS[4], ttl)
return 1
""",
)

# KEYS: player, room, owner, room:players, old room:players (or the same key).
# ARGV: player_id, room_id, entity ('' = nil), hash, joined_at, left_at, seq, node, epoch.
_SAVE_PLAYER = _guarded(
    "KEYS[2]",
    "KEYS[3]",
    """
redis.call('DEL', KEYS[1])
local fields = {'room_id', ARGV[2], 'resume_token_hash', ARGV[4], 'joined_at', ARGV[5]}
if ARGV[3] ~= '' then table.insert(fields, 'entity_net_id'); table.insert(fields, ARGV[3]) end
if ARGV[6] ~= '' then table.insert(fields, 'left_at'); table.insert(fields, ARGV[6]) end
if ARGV[7] ~= '' then table.insert(fields, 'last_input_seq'); table.insert(fields, ARGV[7]) end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
return 1
""",
)

# KEYS: player. ARGV: left_at, prefix, node, epoch. Returns 1, 0 (no such player), or fenced.
_PLAYER_LEFT = (
    _FENCE_LUA
    + """
local room_id = redis.call('HGET', KEYS[1], 'room_id')
if not room_id then return 0 end
local refused = refusal(nil, ARGV[2] .. 'room:' .. room_id .. ':owner')
if refused then return refused end
redis.call('HSET', KEYS[1], 'left_at', ARGV[1])
return 1
"""
)

# ARGV: node, prefix, then triples (player_id, seq, epoch). Unknown players are ignored;
# players of rooms this node no longer owns are skipped and counted. Returns the skip count.
_UPDATE_SEQS = (
    _FENCE_LUA
    + """
local node, prefix = ARGV[1], ARGV[2]
local skipped = 0
for i = 3, #ARGV, 3 do
  local key = prefix .. 'player:' .. ARGV[i]
  local room_id = redis.call('HGET', key, 'room_id')
  if room_id then
    if fenced(prefix .. 'room:' .. room_id .. ':owner', node, ARGV[i + 2]) then
      skipped = skipped + 1
    else
      redis.call('HSET', key, 'last_input_seq', ARGV[i + 1])
    end
  end
end
return skipped
"""
)

# KEYS: checkpoint, room, owner. ARGV: tick, saved_at, blob, node, epoch.
# Returns 1 (written), 2 (kept: the stored tick is newer), 0 (no such room), or fenced.
_SAVE_CHECKPOINT = _guarded(
    "KEYS[2]",
    "KEYS[3]",
    """
local stored = redis.call('HGET', KEYS[1], 'tick')
if stored and tonumber(stored) > tonumber(ARGV[1]) then return 2 end
redis.call('HSET', KEYS[1], 'tick', ARGV[1], 'saved_at', ARGV[2], 'blob', ARGV[3])
return 1
""",
)


class Fence:
    """The epochs this node holds, by room: shared by the ownership code and the writer thread.

    ``node_id`` names this node in ``{p}room:{id}:owner``. A room missing from the table is not
    this node's: its writes are refused locally before they reach Redis.
    """

    def __init__(self, node_id: str) -> None:
        if not node_id:
            raise StorageError("a fence needs a non-empty node id")
        self.node_id = node_id
        self._lock = threading.Lock()
        self._epochs: dict[str, int] = {}

    def hold(self, room_id: str, epoch: int) -> None:
        with self._lock:
            self._epochs[room_id] = epoch

    def drop(self, room_id: str) -> None:
        with self._lock:
            self._epochs.pop(room_id, None)

    def epoch_of(self, room_id: str) -> int | None:
        with self._lock:
            return self._epochs.get(room_id)

    def held(self) -> dict[str, int]:
        """A copy of the whole table (for the heartbeat)."""
        with self._lock:
            return dict(self._epochs)


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


def _opt_float(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: bytes | None) -> int | None:
    return None if value is None else int(value)


def _arg(value: object) -> str | bytes:
    """A script argument: '' for None, floats with full precision (repr round-trips)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value
    return repr(value) if isinstance(value, float) else str(value)


class RedisStorage:
    """A :class:`~astranet.storage.base.Storage` in a Redis server at ``url``."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        fence: Fence | None = None,
        client: redis.Redis | None = None,
    ) -> None:
        """Connect (and PING) now: an unreachable server is a StorageError naming ``url``."""
        self.url = url
        self.prefix = prefix
        self.fence = fence
        self.fenced_writes = 0  # writes refused because another node owns the room
        self._closed = False
        # player_id -> room_id of seated players, for fencing writes that name only the player
        # (writer thread); bounded by the seats held: entries go with player_left/close_room.
        self._player_rooms: dict[str, str] = {}
        try:
            self._redis = client or redis.Redis.from_url(
                url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
            )
        except ValueError as exc:
            raise StorageError(f"{url}: not a Redis URL ({exc})") from exc
        with self._errors("connect"):
            self._redis.ping()
        self._save_room = self._redis.register_script(_SAVE_ROOM)
        self._close_room = self._redis.register_script(_CLOSE_ROOM)
        self._save_player = self._redis.register_script(_SAVE_PLAYER)
        self._player_left = self._redis.register_script(_PLAYER_LEFT)
        self._update_seqs = self._redis.register_script(_UPDATE_SEQS)
        self._save_checkpoint = self._redis.register_script(_SAVE_CHECKPOINT)

    # -- helpers ----------------------------------------------------------------------------

    def _errors(self, doing: str) -> AbstractContextManager[None]:
        """Turn any redis-py error into a StorageError naming the server."""
        return storage_errors(self.url, closed=self._closed, doing=doing, errors=redis.RedisError)

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _fence_args(self, room_id: str) -> tuple[str, str]:
        """(node, epoch) to send with a write for ``room_id``; ('', '') without fencing."""
        if self.fence is None:
            return "", ""
        epoch = self.fence.epoch_of(room_id)
        if epoch is None:
            self.fenced_writes += 1
            raise FencedOut(room_id, f"room {room_id} is not held by node {self.fence.node_id}")
        return self.fence.node_id, str(epoch)

    def _room_write(
        self, doing: str, script: Any, room_id: str, keys: list[str], args: list[Any]
    ) -> Any:
        """Run a room-scoped write script with this node's (node, epoch) as its last two ARGV.

        Returns the script's result (0: no such room); a fence refusal raises FencedOut.
        """
        node, epoch = self._fence_args(room_id)
        with self._errors(doing):
            result = script(keys=keys, args=[*args, node, epoch])
        return self._check_fenced(room_id, result)

    def _check_fenced(self, room_id: str, result: Any) -> Any:
        if isinstance(result, list) and result and _text(result[0]) == "fenced":
            self.fenced_writes += 1
            owner, epoch = _text(result[1]) or "nobody", _text(result[2])
            held = self.fence.epoch_of(room_id) if self.fence is not None else None
            raise FencedOut(
                room_id,
                f"room {room_id} is owned by node {owner} at epoch {epoch}; "
                f"this node held epoch {held}",
            )
        return result

    # -- rooms ------------------------------------------------------------------------------

    def save_room(self, room: RoomRecord) -> None:
        node = self.fence.node_id if self.fence is not None else ""
        with self._errors("save_room"):
            result = self._save_room(
                keys=[
                    self._key("room", room.room_id),
                    self._key("rooms", "open"),
                    self._key("room", room.room_id, "owner"),
                ],
                args=[
                    room.room_id,
                    room.region,
                    room.game_mode,
                    room.capacity,
                    _arg(room.created_at),
                    _arg(room.closed_at),
                    node,
                    CLOSED_ROOM_TTL_S,
                ],
            )
        epoch = self._check_fenced(room.room_id, result)
        if self.fence is not None:
            self.fence.hold(room.room_id, int(epoch))

    def close_room(self, room_id: str, closed_at: float) -> None:
        keys = [
            self._key("room", room_id),
            self._key("rooms", "open"),
            self._key("room", room_id, "owner"),
            self._key("room", room_id, "players"),
            self._key("checkpoint", room_id),
        ]
        args = [room_id, _arg(closed_at), CLOSED_ROOM_TTL_S]
        if self._room_write("close_room", self._close_room, room_id, keys, args) == 0:
            raise StorageError(f"{self.url}: close_room: no room {room_id!r}")
        # The cache only serves writes of live seats: forget the closed room's players; and a
        # closed room is nobody's to write any more (a later write is refused locally).
        self._player_rooms = {p: r for p, r in self._player_rooms.items() if r != room_id}
        if self.fence is not None:
            self.fence.drop(room_id)

    def open_rooms(self) -> list[RoomRecord]:
        with self._errors("open_rooms"):
            room_ids = [_text(r) for r in self._redis.zrange(self._key("rooms", "open"), 0, -1)]
            pipe = self._redis.pipeline(transaction=False)
            for room_id in room_ids:
                pipe.hgetall(self._key("room", str(room_id)))
            rows = pipe.execute()
        rooms = [
            self._room_record(str(room_id), row)
            for room_id, row in zip(room_ids, rows, strict=True)
            if row  # an expired or half-deleted room is not open
        ]
        rooms.sort(key=lambda r: (r.created_at, r.room_id))
        return rooms

    def room(self, room_id: str) -> RoomRecord | None:
        """One room's record (open or closed), or None."""
        with self._errors("room"):
            row = self._redis.hgetall(self._key("room", room_id))
        return self._room_record(room_id, row) if row else None

    def _room_record(self, room_id: str, row: dict[bytes, bytes]) -> RoomRecord:
        try:
            return RoomRecord(
                room_id,
                str(_text(row[b"region"])),
                str(_text(row[b"game_mode"])),
                int(row[b"capacity"]),
                float(row[b"created_at"]),
                _opt_float(row.get(b"closed_at")),
            )
        except (KeyError, ValueError) as exc:
            raise StorageError(f"{self.url}: room {room_id!r} has a malformed record") from exc

    # -- players ----------------------------------------------------------------------------

    def save_player(self, player: PlayerRecord) -> None:
        old_room = self._player_rooms.get(player.player_id, player.room_id)
        keys = [
            self._key("player", player.player_id),
            self._key("room", player.room_id),
            self._key("room", player.room_id, "owner"),
            self._key("room", player.room_id, "players"),
            self._key("room", old_room, "players"),
        ]
        args = [
            player.player_id,
            player.room_id,
            _arg(player.entity_net_id),
            player.resume_token_hash,
            _arg(player.joined_at),
            _arg(player.left_at),
            _arg(player.last_input_seq),
        ]
        if self._room_write("save_player", self._save_player, player.room_id, keys, args) == 0:
            raise StorageError(
                f"{self.url}: save_player {player.player_id!r}: no room {player.room_id!r} "
                "(FOREIGN KEY)"
            )
        self._player_rooms[player.player_id] = player.room_id

    def _room_of(self, player_id: str) -> str | None:
        room_id = self._player_rooms.get(player_id)
        if room_id is None:
            with self._errors("player lookup"):
                room_id = _text(self._redis.hget(self._key("player", player_id), "room_id"))
            if room_id is not None:
                self._player_rooms[player_id] = room_id
        return room_id

    def player_left(self, player_id: str, left_at: float) -> None:
        room_id = self._room_of(player_id)
        if room_id is None:
            raise StorageError(f"{self.url}: player_left: no player {player_id!r}")
        keys = [self._key("player", player_id)]
        args = [_arg(left_at), self.prefix]
        if self._room_write("player_left", self._player_left, room_id, keys, args) == 0:
            raise StorageError(f"{self.url}: player_left: no player {player_id!r}")
        self._player_rooms.pop(player_id, None)  # a seat that is gone gets no more seq writes

    def players_in_room(self, room_id: str) -> list[PlayerRecord]:
        with self._errors("players_in_room"):
            ids = [
                str(_text(p))
                for p in self._redis.zrange(self._key("room", room_id, "players"), 0, -1)
            ]
            pipe = self._redis.pipeline(transaction=False)
            for player_id in ids:
                pipe.hgetall(self._key("player", player_id))
            rows = pipe.execute()
        players = []
        for player_id, row in zip(ids, rows, strict=True):
            if not row or _text(row.get(b"room_id")) != room_id:
                continue  # moved to another room since (save_player is an upsert)
            players.append(self._player_record(player_id, room_id, row))
            self._player_rooms[player_id] = room_id
        players.sort(key=lambda p: (p.joined_at, p.player_id))
        return players

    def _player_record(self, player_id: str, room_id: str, row: dict[bytes, bytes]):
        try:
            return PlayerRecord(
                player_id,
                room_id,
                _opt_int(row.get(b"entity_net_id")),
                row[b"resume_token_hash"],
                float(row[b"joined_at"]),
                _opt_float(row.get(b"left_at")),
                _opt_int(row.get(b"last_input_seq")),
            )
        except (KeyError, ValueError) as exc:
            raise StorageError(f"{self.url}: player {player_id!r} has a malformed record") from exc

    def update_last_input_seq(self, seqs: Mapping[str, int]) -> None:
        check_seqs(seqs)
        if not seqs:
            return
        node = self.fence.node_id if self.fence is not None else ""
        args: list[str] = [node, self.prefix]
        for player_id, seq in seqs.items():
            epoch = ""
            if self.fence is not None:
                room_id = self._player_rooms.get(player_id)
                held = self.fence.epoch_of(room_id) if room_id is not None else None
                if held is None:
                    continue  # not a player of a room this node holds: nothing to write
                epoch = str(held)
            args += [player_id, str(seq), epoch]
        if len(args) == 2:
            return
        # One script for the whole batch: one round trip instead of one per player.
        with self._errors("update_last_input_seq"):
            skipped = int(self._update_seqs(keys=[], args=args))
        self.fenced_writes += skipped

    # -- checkpoints ------------------------------------------------------------------------

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        blob = encode_checkpoint(checkpoint.tick, checkpoint.state)
        room_id = checkpoint.room_id
        keys = [
            self._key("checkpoint", room_id),
            self._key("room", room_id),
            self._key("room", room_id, "owner"),
        ]
        args = [checkpoint.tick, _arg(float(checkpoint.saved_at)), blob]
        if self._room_write("save_checkpoint", self._save_checkpoint, room_id, keys, args) == 0:
            raise StorageError(f"{self.url}: save_checkpoint: no room {room_id!r} (FOREIGN KEY)")

    def load_checkpoint(self, room_id: str) -> Checkpoint | None:
        with self._errors("load_checkpoint"):
            row = self._redis.hmget(self._key("checkpoint", room_id), "tick", "saved_at", "blob")
        row_tick, saved_at, blob = row
        if blob is None:
            return None
        try:
            tick, state = decode_checkpoint(blob)
            row_tick_int = int(row_tick)
            saved = float(saved_at)
        except (StorageError, TypeError, ValueError) as exc:
            raise StorageError(f"{self.url}: checkpoint of room {room_id!r}: {exc}") from exc
        if tick != row_tick_int:
            raise StorageError(
                f"{self.url}: checkpoint of room {room_id!r}: row tick {row_tick_int} "
                f"!= blob {tick}"
            )
        return Checkpoint(room_id=room_id, tick=tick, saved_at=saved, state=state)

    # -- lifecycle --------------------------------------------------------------------------

    def backup(self, path: str | Path) -> None:
        """Copy every open room, its players and checkpoint into a new SQLite file at ``path``.

        Not a point-in-time snapshot across rooms (each room is read on its own), which is what
        a restore needs: each room's checkpoint and seats are consistent with each other.
        """
        from astranet.storage.sqlite import SQLiteStorage  # only backups need it

        target = SQLiteStorage(path)
        try:
            for room in self.open_rooms():
                target.save_room(room)
                for player in self.players_in_room(room.room_id):
                    target.save_player(player)
                checkpoint = self.load_checkpoint(room.room_id)
                if checkpoint is not None:
                    target.save_checkpoint(checkpoint)
        finally:
            target.close()

    def close(self) -> None:
        """Close the connection pool. Idempotent."""
        if not self._closed:
            self._closed = True
            self._redis.close()
