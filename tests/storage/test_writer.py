"""StorageWriter: non-blocking submits, coalescing, bounds, flush, errors and close."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from astranet.errors import InvalidState, StorageError
from astranet.storage.base import (
    Checkpoint,
    FencedOut,
    PlayerRecord,
    RoomRecord,
    hash_resume_token,
)
from astranet.storage.sqlite import SQLiteStorage
from astranet.storage.writer import StorageWriter, WriteQueueFull

pytestmark = pytest.mark.timeout(30)

# Upper bound for waiting on the writer thread in a test; reached only on a bug.
THREAD_WAIT_S = 10.0


class GatedStorage(SQLiteStorage):
    """A real SQLiteStorage whose first ``save_room`` waits for the test to open a gate.

    While the writer thread is parked there, everything else the test submits stays queued,
    which makes queue contents deterministic without sleeping.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def save_room(self, room: RoomRecord) -> None:
        self.entered.set()
        self.gate.wait(THREAD_WAIT_S)
        super().save_room(room)


def _room(room_id: str) -> RoomRecord:
    return RoomRecord(room_id, "us-east", "coop", 4, 1.0)


def _checkpoint(room_id: str, tick: int) -> Checkpoint:
    return Checkpoint(room_id, tick, float(tick), {"x": np.full(8, tick, "<i8")})


async def _gated_writer(tmp_path: Path, **kwargs) -> tuple[StorageWriter, GatedStorage]:
    """A writer whose thread is parked inside ``save_room('Room0001')``."""
    opened: list[GatedStorage] = []

    def open_storage() -> GatedStorage:
        opened.append(GatedStorage(tmp_path / "w.db"))
        return opened[0]

    writer = await StorageWriter.start(open_storage, **kwargs)
    writer.submit_room(_room("Room0001"))
    assert await asyncio.to_thread(opened[0].entered.wait, THREAD_WAIT_S)
    return writer, opened[0]


def _read(path: Path) -> SQLiteStorage:
    """An independent connection, to check what really reached the file."""
    return SQLiteStorage(path)


async def test_start_opens_and_close_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    writer = await StorageWriter.start(lambda: SQLiteStorage(path))
    writer.submit_room(_room("Room0001"))
    assert [r.room_id for r in await writer.open_rooms()] == ["Room0001"]
    await writer.close()
    await writer.close()  # idempotent
    assert not writer._thread.is_alive()
    assert not (tmp_path / "a.db-wal").exists()  # connection closed: WAL folded back
    with pytest.raises(InvalidState):
        writer.submit_room(_room("Room0002"))


async def test_start_reports_a_bad_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(StorageError, match=r"junk\.db"):
        await StorageWriter.start(lambda: SQLiteStorage(path))


async def test_submit_does_not_block_while_the_disk_is_stuck(tmp_path: Path) -> None:
    writer, storage = await _gated_writer(tmp_path)
    # The writer thread is stuck; every call below must still return at once.
    for tick in range(1, 101):
        assert writer.submit_checkpoint(_checkpoint("Room0001", tick))
    writer.submit_player(PlayerRecord("p1", "Room0001", 3, hash_resume_token(b"tok"), 1.0))
    assert writer.submit_last_input_seqs({"p1": 7})
    assert storage.gate.is_set() is False  # nothing above waited for the disk
    storage.gate.set()
    await writer.close()


async def test_newer_checkpoint_replaces_pending_one(tmp_path: Path) -> None:
    writer, storage = await _gated_writer(tmp_path)
    for tick in range(1, 101):
        writer.submit_checkpoint(_checkpoint("Room0001", tick))
    writer.submit_checkpoint(_checkpoint("Room0001", 50))  # stale: must not win
    assert writer.pending_jobs == 1
    assert writer.checkpoints_coalesced == 100
    storage.gate.set()
    await writer.flush()
    assert writer.checkpoints_written == 1
    checkpoint = await writer.load_checkpoint("Room0001")
    assert checkpoint is not None and checkpoint.tick == 100
    assert checkpoint.state["x"].tolist() == [100] * 8
    await writer.close()


async def test_submitted_state_is_copied(tmp_path: Path) -> None:
    writer, storage = await _gated_writer(tmp_path)
    state = {"x": np.zeros(4, "<f4")}
    writer.submit_checkpoint(Checkpoint("Room0001", 1, 1.0, state))
    state["x"][:] = 9.0  # the tick loop keeps mutating its columns
    storage.gate.set()
    checkpoint = await writer.load_checkpoint("Room0001")
    assert checkpoint is not None and checkpoint.state["x"].tolist() == [0.0] * 4
    await writer.close()


async def test_seq_batches_merge_and_land_in_order(tmp_path: Path) -> None:
    writer, storage = await _gated_writer(tmp_path)
    token_hash = hash_resume_token(b"tok")
    for pid in ("a", "b"):
        writer.submit_player(PlayerRecord(pid, "Room0001", None, token_hash, 1.0))
    writer.submit_last_input_seqs({"a": 1})
    writer.submit_last_input_seqs({"a": 2, "b": 3})
    assert writer.pending_jobs == 3  # two players + one merged seq batch
    storage.gate.set()
    players = await writer.players_in_room("Room0001")
    assert {p.player_id: p.last_input_seq for p in players} == {"a": 2, "b": 3}
    await writer.close()


async def test_full_queue_drops_new_checkpoints_and_refuses_records(tmp_path: Path) -> None:
    writer, storage = await _gated_writer(tmp_path, max_pending_jobs=2)
    assert writer.submit_checkpoint(_checkpoint("Room0001", 1))
    writer.submit_room(_room("Room0002"))
    assert writer.pending_jobs == 2
    assert writer.submit_checkpoint(_checkpoint("Room0001", 2))  # coalesces: still accepted
    assert not writer.submit_checkpoint(_checkpoint("Room0002", 1))  # new room: dropped
    assert writer.checkpoints_dropped == 1
    with pytest.raises(WriteQueueFull, match="queue full"):
        writer.submit_room(_room("Room0003"))
    storage.gate.set()
    await writer.flush()
    assert (await writer.load_checkpoint("Room0001")).tick == 2
    assert await writer.load_checkpoint("Room0002") is None
    await writer.close()


async def test_flush_waits_for_pending_writes(tmp_path: Path) -> None:
    writer, storage = await _gated_writer(tmp_path)
    writer.submit_checkpoint(_checkpoint("Room0001", 5))
    flushing = asyncio.create_task(writer.flush())
    await asyncio.sleep(0)  # let the task start; it cannot finish while the gate is shut
    assert not flushing.done()
    storage.gate.set()
    await asyncio.wait_for(flushing, THREAD_WAIT_S)
    reader = _read(tmp_path / "w.db")
    try:
        checkpoint = reader.load_checkpoint("Room0001")
        assert checkpoint is not None and checkpoint.tick == 5
    finally:
        reader.close()
    await writer.close()


async def test_write_errors_are_counted_surfaced_on_flush_and_not_fatal(tmp_path: Path) -> None:
    writer = await StorageWriter.start(lambda: SQLiteStorage(tmp_path / "e.db"))
    writer.submit_close_room("Missing0", 1.0)  # no such room: the write fails in the thread
    assert writer.submit_checkpoint(_checkpoint("Missing0", 1))  # foreign key fails too
    with pytest.raises(StorageError, match=r"2 storage write\(s\) failed"):
        await writer.flush()
    assert writer.writes_failed == 2
    # The thread lives on and later work succeeds; the error is reported once.
    writer.submit_room(_room("Room0001"))
    await writer.flush()
    assert [r.room_id for r in await writer.open_rooms()] == ["Room0001"]
    await writer.close()


async def test_read_errors_go_to_the_reader(tmp_path: Path) -> None:
    writer = await StorageWriter.start(lambda: SQLiteStorage(tmp_path / "r.db"))
    with pytest.raises(StorageError):
        await writer.backup(tmp_path / "missing-dir" / "b.db")
    await writer.flush()  # a failed read is not a failed write
    await writer.close()


async def test_backup_through_the_writer(tmp_path: Path) -> None:
    writer = await StorageWriter.start(lambda: SQLiteStorage(tmp_path / "live.db"))
    writer.submit_room(_room("Room0001"))
    writer.submit_checkpoint(_checkpoint("Room0001", 3))
    await writer.backup(tmp_path / "copy.db")
    await writer.close()
    copy = _read(tmp_path / "copy.db")
    try:
        assert copy.load_checkpoint("Room0001").tick == 3
    finally:
        copy.close()


async def test_close_flushes_pending_writes(tmp_path: Path) -> None:
    writer, storage = await _gated_writer(tmp_path)
    writer.submit_checkpoint(_checkpoint("Room0001", 8))
    storage.gate.set()
    await writer.close()
    reader = _read(tmp_path / "w.db")
    try:
        assert reader.load_checkpoint("Room0001").tick == 8
    finally:
        reader.close()


async def test_a_fenced_write_is_counted_and_is_not_a_failure(tmp_path: Path) -> None:
    class FencedStorage(SQLiteStorage):
        def save_checkpoint(self, checkpoint: Checkpoint) -> None:
            raise FencedOut(checkpoint.room_id, f"room {checkpoint.room_id} moved")

    writer = await StorageWriter.start(lambda: FencedStorage(tmp_path / "f.db"))
    writer.submit_room(_room("Room0001"))
    writer.submit_checkpoint(_checkpoint("Room0001", 5))
    await writer.flush()  # no StorageError: another node owning the room is not a fault here
    assert (writer.writes_fenced, writer.writes_failed, writer.checkpoints_written) == (1, 0, 0)
    await writer.close()


class FullDisk(SQLiteStorage):
    """A real SQLiteStorage whose writes fail like a full disk while ``full`` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.full = threading.Event()
        self.attempts = 0

    def _refuse_if_full(self) -> None:
        if self.full.is_set():
            self.attempts += 1
            raise sqlite3.OperationalError("database or disk is full")

    def save_room(self, room: RoomRecord) -> None:
        self._refuse_if_full()
        super().save_room(room)

    def save_player(self, player: PlayerRecord) -> None:
        self._refuse_if_full()
        super().save_player(player)


async def _full_disk_writer(tmp_path: Path) -> tuple[StorageWriter, FullDisk]:
    opened: list[FullDisk] = []

    def open_storage() -> FullDisk:
        opened.append(FullDisk(tmp_path / "full.db"))
        return opened[0]

    return await StorageWriter.start(open_storage), opened[0]


async def test_a_disk_that_was_full_catches_up_and_close_reports_nothing(tmp_path: Path) -> None:
    writer, storage = await _full_disk_writer(tmp_path)
    storage.full.set()
    writer.submit_room(_room("Room0001"))  # fails: kept for retry
    writer.submit_player(PlayerRecord("p1", "Room0001", 3, hash_resume_token(b"t"), 1.0))
    with pytest.raises(StorageError, match=r"still failing"):
        await writer.flush()
    assert writer.writes_retrying == 2 and writer.writes_failed >= 1
    storage.full.clear()  # the operator freed some space
    writer.submit_room(_room("Room0002"))  # the next batch retries the backlog first
    await asyncio.wait_for(writer.flush(), THREAD_WAIT_S)
    assert (writer.writes_retried, writer.writes_retrying) == (2, 0)
    await writer.close()  # nothing lost: no StorageError (the CLI exits 0)
    reader = _read(tmp_path / "full.db")
    try:
        assert [p.player_id for p in reader.players_in_room("Room0001")] == ["p1"]
    finally:
        reader.close()


async def test_close_reports_writes_still_failing_at_exit(tmp_path: Path) -> None:
    writer, storage = await _full_disk_writer(tmp_path)
    storage.full.set()
    writer.submit_room(_room("Room0001"))
    with pytest.raises(StorageError, match=r"1 write\(s\) still failing"):
        await writer.close()
    assert storage.attempts >= 2  # close made a last attempt
