"""Off-loop storage: one background thread owns the backend; the tick loop never waits on disk.

What: :class:`StorageWriter` runs a :class:`~astranet.storage.base.Storage` (opened *on*
its thread, so sqlite3's same-thread rule holds without ``check_same_thread=False``) and
feeds it from a bounded in-memory queue of jobs. ``submit_*`` methods are plain,
non-blocking calls for the asyncio loop; ``flush``/``close`` and the read helpers are
awaitable and complete via ``call_soon_threadsafe``, never by polling.

Ordering: jobs run in submission order, so ``save_room`` lands before that room's
checkpoints (the foreign key needs it) and a read sees every write submitted before it.

Coalescing (why the queue stays small when the disk stalls):
- a checkpoint for a room that already has one pending *replaces it in place* (it keeps the
  older job's queue position, which is after the room's ``save_room``); only the newest
  tick is ever written. This happens whether or not the queue is full.
- ``submit_last_input_seqs`` merges into the pending batch at the queue's tail, so 30 Hz
  updates between two disk writes become one transaction.

Bounds: MAX_PENDING_JOBS. When the queue is full, a checkpoint for a room with none pending
is dropped (counted, returns False: the previous one on disk stays valid and the next
interval retries), a seq batch merges into the newest pending batch or is dropped, and a
record write (room/player) raises :class:`WriteQueueFull` so the server can refuse the join
rather than silently lose a seat.

Errors: a failing job is logged and counted (``writes_failed``) and the thread carries on; a
write a fenced backend refuses (``FencedOut``: the room moved to another node) is counted in
``writes_fenced`` and is not a failure;
the next ``flush()`` raises StorageError summarising the failures since the previous flush.
Reads deliver their own exceptions to their awaiting caller.

Limits: one thread, one backend connection; a job runs at the backend's speed.
Benchmark: see ``docs/storage.md`` (submit cost and checkpoints written per second).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from astranet.errors import InvalidState, StorageError
from astranet.storage.base import Checkpoint, FencedOut, PlayerRecord, RoomRecord, Storage

__all__ = ["MAX_PENDING_JOBS", "StorageWriter", "WriteQueueFull"]

log = logging.getLogger(__name__)

# Normal load is a handful of jobs per second per room (one checkpoint, a seq batch, joins);
# 10 000 absorbs a multi-second disk stall for hundreds of rooms, while the coalescing
# above keeps checkpoints (the big jobs) at most one per room.
MAX_PENDING_JOBS = 10_000

T = TypeVar("T")


class WriteQueueFull(StorageError):
    """The writer's queue is at MAX_PENDING_JOBS; the record write was not accepted."""


class _Job:
    """One unit of work for the writer thread."""

    __slots__ = ()

    def run(self, storage: Storage) -> None:
        raise NotImplementedError


class _CallJob(_Job):
    """A write: call ``fn(storage)``; failures are counted by the worker."""

    __slots__ = ("description", "fn")

    def __init__(self, description: str, fn: Callable[[Storage], object]) -> None:
        self.description = description
        self.fn = fn

    def run(self, storage: Storage) -> None:
        self.fn(storage)


class _ReadJob(_Job):
    """A read (or backup): the result or exception goes to the awaiting caller."""

    __slots__ = ("fn", "reply")

    def __init__(self, fn: Callable[[Storage], Any]) -> None:
        self.fn = fn
        self.reply: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run(self, storage: Storage) -> None:
        try:
            self.reply.set_result(self.fn(storage))
        except BaseException as exc:  # delivered to the caller, who handles it
            self.reply.set_exception(exc)


class _CheckpointJob(_Job):
    """Mutable so a newer checkpoint can replace a pending one in place."""

    __slots__ = ("checkpoint",)

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint

    def run(self, storage: Storage) -> None:
        storage.save_checkpoint(self.checkpoint)


class _SeqBatchJob(_Job):
    __slots__ = ("seqs",)

    def __init__(self, seqs: Mapping[str, int]) -> None:
        self.seqs = dict(seqs)

    def run(self, storage: Storage) -> None:
        storage.update_last_input_seq(self.seqs)


def _copy_checkpoint(checkpoint: Checkpoint) -> Checkpoint:
    """Snapshot the arrays: the tick loop keeps mutating its columns after submitting."""
    state = {name: np.array(array, copy=True) for name, array in checkpoint.state.items()}
    return Checkpoint(checkpoint.room_id, checkpoint.tick, checkpoint.saved_at, state)


class StorageWriter:
    """Runs a Storage on a background thread; create with ``await StorageWriter.start(...)``."""

    def __init__(
        self,
        open_storage: Callable[[], Storage],
        *,
        max_pending_jobs: int = MAX_PENDING_JOBS,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Prefer :meth:`start`, which also opens the backend and reports its errors."""
        if max_pending_jobs < 1:
            raise StorageError(f"max_pending_jobs must be >= 1, got {max_pending_jobs}")
        self._open_storage = open_storage
        self._max_pending_jobs = max_pending_jobs
        self._loop = loop
        self._cond = threading.Condition()
        # Guarded by _cond:
        self._jobs: deque[_Job] = deque()
        self._pending_checkpoints: dict[str, _CheckpointJob] = {}
        self._newest_seq_job: _SeqBatchJob | None = None
        self._submitted = 0  # jobs (or coalesced submissions) accepted so far
        self._completed = 0  # every submission numbered <= this has been processed
        self._failures_since_flush = 0
        self._last_failure: BaseException | None = None
        self._closing = False
        # Counters for /metrics (read without the lock; ints are updated atomically).
        self.writes_failed = 0
        self.writes_fenced = 0  # refused: the room is another node's now (FencedOut)
        self.checkpoints_written = 0
        self.checkpoints_coalesced = 0
        self.checkpoints_dropped = 0
        self.seq_batches_dropped = 0
        # Loop-thread only:
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._started: asyncio.Future[None] = loop.create_future()
        self._stopped: asyncio.Future[None] = loop.create_future()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="astranet-storage", daemon=True)

    @classmethod
    async def start(
        cls, open_storage: Callable[[], Storage], *, max_pending_jobs: int = MAX_PENDING_JOBS
    ) -> StorageWriter:
        """Start the thread, open the backend on it, and return once it is open.

        Raises whatever ``open_storage`` raises (StorageError for a bad database file).
        """
        writer = cls(
            open_storage, max_pending_jobs=max_pending_jobs, loop=asyncio.get_running_loop()
        )
        writer._thread.start()
        await writer._started
        return writer

    # -- submissions (loop thread, never block) -----------------------------------------

    @property
    def pending_jobs(self) -> int:
        return len(self._jobs)

    def _check_open_locked(self) -> None:
        if self._closing:
            raise InvalidState("storage writer is closed")

    def _append_locked(self, job: _Job) -> None:
        self._submitted += 1
        self._jobs.append(job)
        self._cond.notify()

    def _submit_record(self, description: str, fn: Callable[[Storage], object]) -> None:
        with self._cond:
            self._check_open_locked()
            if len(self._jobs) >= self._max_pending_jobs:
                raise WriteQueueFull(
                    f"storage queue full ({self._max_pending_jobs} jobs); {description} refused"
                )
            self._append_locked(_CallJob(description, fn))

    def submit_room(self, room: RoomRecord) -> None:
        self._submit_record(f"save_room {room.room_id}", lambda s: s.save_room(room))

    def submit_close_room(self, room_id: str, closed_at: float) -> None:
        self._submit_record(f"close_room {room_id}", lambda s: s.close_room(room_id, closed_at))

    def submit_player(self, player: PlayerRecord) -> None:
        self._submit_record(f"save_player {player.player_id}", lambda s: s.save_player(player))

    def submit_player_left(self, player_id: str, left_at: float) -> None:
        self._submit_record(f"player_left {player_id}", lambda s: s.player_left(player_id, left_at))

    def submit_checkpoint(self, checkpoint: Checkpoint) -> bool:
        """Queue (or coalesce) a checkpoint; False if it was dropped because the queue is full.

        The arrays are copied now, so the caller may keep mutating its state.
        """
        snapshot = _copy_checkpoint(checkpoint)
        with self._cond:
            self._check_open_locked()
            pending = self._pending_checkpoints.get(snapshot.room_id)
            if pending is not None:
                self._submitted += 1
                self.checkpoints_coalesced += 1
                if snapshot.tick >= pending.checkpoint.tick:
                    pending.checkpoint = snapshot
                return True
            if len(self._jobs) >= self._max_pending_jobs:
                self._submitted += 1
                self.checkpoints_dropped += 1
                log.warning("storage queue full: dropped checkpoint of room %s", snapshot.room_id)
                return False
            job = _CheckpointJob(snapshot)
            self._pending_checkpoints[snapshot.room_id] = job
            self._append_locked(job)
            return True

    def submit_last_input_seqs(self, seqs: Mapping[str, int]) -> bool:
        """Queue ``last_input_seq`` updates (player_id -> seq); False if dropped (queue full)."""
        if not seqs:
            return True
        with self._cond:
            self._check_open_locked()
            newest = self._newest_seq_job
            at_tail = newest is not None and self._jobs and self._jobs[-1] is newest
            full = len(self._jobs) >= self._max_pending_jobs
            if newest is not None and (at_tail or full):
                # Merging out of the tail reorders only under overload (documented above).
                self._submitted += 1
                newest.seqs.update(seqs)
                return True
            if full:
                self._submitted += 1
                self.seq_batches_dropped += 1
                return False
            self._newest_seq_job = _SeqBatchJob(seqs)
            self._append_locked(self._newest_seq_job)
            return True

    # -- awaitables -------------------------------------------------------------------

    async def _call(self, fn: Callable[[Storage], T]) -> T:
        job = _ReadJob(fn)
        with self._cond:
            self._check_open_locked()
            self._append_locked(job)
        result: T = await asyncio.wrap_future(job.reply)
        return result

    async def open_rooms(self) -> list[RoomRecord]:
        return await self._call(lambda s: s.open_rooms())

    async def room(self, room_id: str) -> RoomRecord | None:
        return await self._call(lambda s: s.room(room_id))

    async def players_in_room(self, room_id: str) -> list[PlayerRecord]:
        return await self._call(lambda s: s.players_in_room(room_id))

    async def load_checkpoint(self, room_id: str) -> Checkpoint | None:
        return await self._call(lambda s: s.load_checkpoint(room_id))

    async def backup(self, path: str | Path) -> None:
        await self._call(lambda s: s.backup(path))

    async def flush(self) -> None:
        """Wait until every job submitted so far has run; raise if any write failed."""
        with self._cond:
            target = self._submitted
            done = self._completed >= target
        if not done:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._flush_waiters.append((target, waiter))
            await waiter
        with self._cond:
            failures, last = self._failures_since_flush, self._last_failure
            self._failures_since_flush, self._last_failure = 0, None
        if failures:
            raise StorageError(
                f"{failures} storage write(s) failed since the last flush; last: {last}"
            ) from last

    async def close(self) -> None:
        """Flush, stop the thread and close the backend. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.flush()
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify()
            await self._stopped
            self._thread.join()  # already finished: _stopped is set as its last act

    # -- the writer thread ------------------------------------------------------------

    def _to_loop(self, callback: Callable[..., object], *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # loop already closed: nobody is left to notify
            log.debug("storage writer: event loop closed before notification")

    def _run(self) -> None:
        try:
            storage = self._open_storage()
        except BaseException as exc:
            self._to_loop(_settle, self._started, exc)
            self._to_loop(_settle, self._stopped, None)
            return
        self._to_loop(_settle, self._started, None)
        try:
            self._drain_until_closed(storage)
        finally:
            try:
                storage.close()
            except Exception:
                log.exception("storage writer: closing the backend failed")
            self._to_loop(_settle, self._stopped, None)

    def _drain_until_closed(self, storage: Storage) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closing:
                    self._cond.wait()
                if not self._jobs:
                    return  # closing and drained
                # Swap, don't copy (websockets' outbox idiom); taken jobs can't be coalesced.
                batch, self._jobs = self._jobs, deque()
                self._pending_checkpoints.clear()
                self._newest_seq_job = None
                batch_upto = self._submitted
            for job in batch:
                self._run_job(storage, job)
            with self._cond:
                self._completed = batch_upto
            self._to_loop(self._wake_flushers, batch_upto)

    def _run_job(self, storage: Storage, job: _Job) -> None:
        try:
            job.run(storage)
        except FencedOut as exc:
            # Expected after a failover: another node owns the room now. One line, no trace;
            # not a failure of this store (flush() does not raise for it).
            self.writes_fenced += 1
            log.warning("storage writer: %s refused: %s", _describe(job), exc)
            return
        except Exception as exc:  # logged, counted, surfaced by flush(); the thread lives on
            log.exception("storage writer: %s failed", _describe(job))
            with self._cond:
                self.writes_failed += 1
                self._failures_since_flush += 1
                self._last_failure = exc
            return
        if isinstance(job, _CheckpointJob):
            self.checkpoints_written += 1

    def _wake_flushers(self, completed: int) -> None:
        still_waiting = []
        for target, waiter in self._flush_waiters:
            if target <= completed:
                _settle(waiter, None)
            else:
                still_waiting.append((target, waiter))
        self._flush_waiters = still_waiting


def _settle(future: asyncio.Future[None], outcome: BaseException | None) -> None:
    if future.done():
        return
    if outcome is None:
        future.set_result(None)
    else:
        future.set_exception(outcome)


def _describe(job: _Job) -> str:
    if isinstance(job, _CallJob):
        return job.description
    if isinstance(job, _CheckpointJob):
        return f"save_checkpoint {job.checkpoint.room_id} tick {job.checkpoint.tick}"
    return type(job).__name__.lstrip("_")
