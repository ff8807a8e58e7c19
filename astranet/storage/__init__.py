"""astranet.storage: durable rooms, players and room checkpoints (WIRE.md rules 7-8).

Modules:
    base        records (RoomRecord, PlayerRecord, Checkpoint) and the Storage protocol
    sqlite      SQLiteStorage: one WAL-mode SQLite file, explicit schema migrations
    redis       RedisStorage: rooms shared by a cluster's nodes, writes fenced by epoch
                (imported on demand: ``from astranet.storage.redis import RedisStorage``)
    checkpoint  versioned, validated codec for a room's replicated numpy state
    writer      StorageWriter: runs a Storage on one background thread for the asyncio loop

Typical server use::

    writer = await StorageWriter.start(lambda: SQLiteStorage(db_path))
    for room in await writer.open_rooms(): ...           # restore on startup
    writer.submit_checkpoint(Checkpoint(room_id, tick, time.time(), state))  # every interval
    await writer.close()                                 # on SIGTERM: flushes first

Documentation: docs/storage.md.
"""

from astranet.storage.base import (
    Checkpoint,
    FencedOut,
    PlayerRecord,
    RoomRecord,
    Storage,
    hash_resume_token,
    token_matches,
)
from astranet.storage.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    decode_checkpoint,
    encode_checkpoint,
)
from astranet.storage.sqlite import ASTRANET_APPLICATION_ID, SCHEMA_VERSION, SQLiteStorage
from astranet.storage.writer import MAX_PENDING_JOBS, StorageWriter, WriteQueueFull

__all__ = [
    "ASTRANET_APPLICATION_ID",
    "CHECKPOINT_FORMAT_VERSION",
    "MAX_PENDING_JOBS",
    "SCHEMA_VERSION",
    "Checkpoint",
    "FencedOut",
    "PlayerRecord",
    "RoomRecord",
    "SQLiteStorage",
    "Storage",
    "StorageWriter",
    "WriteQueueFull",
    "decode_checkpoint",
    "encode_checkpoint",
    "hash_resume_token",
    "token_matches",
]
