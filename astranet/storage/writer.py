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

Errors: a failing job is counted (``writes_failed``) and the thread carries on; a write a
fenced backend refuses (``FencedOut``: the room moved to another node) is counted in
``writes_fenced`` and is not a failure. A *transient* failure (``TRANSIENT_ERRORS``: sqlite's
OperationalError such as "database or disk is full", an OSError, a lost Redis connection) is
kept and retried, in order, every ``RETRY_INTERVAL_S`` and before each new batch; while any
write waits for its retry, newer writes queue behind it (never run ahead of it), so a disk that
was full once catches up and players who joined meanwhile are written. The first failure of an
outage is logged with its traceback, the rest are counted (``writes_retrying`` is the backlog).
A *permanent* failure (a constraint violation: retrying cannot help) is logged and reported
once by the next ``flush()``. ``close()`` makes a last retry round and raises StorageError only
for what is lost at exit: permanent failures since the last flush, writes still failing, and
writes dropped because the retry backlog overflowed (``writes_lost``).
Reads deliver their own exceptions to their awaiting caller.

Limits: one thread, one backend connection; a job runs at the backend's speed.
Benchmark: see ``docs/storage.md`` (submit cost and checkpoints written per second).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
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

#: A failed write is retried this often while the backend keeps failing (a full disk is
#: usually fixed in minutes; one attempt a second costs nothing).
RETRY_INTERVAL_S = 1.0


def _transient_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [sqlite3.OperationalError, OSError]
    try:
        import redis.exceptions
    except ImportError:  # pragma: no cover - redis is a dependency, but stay optional here
        pass
    else:
        errors += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    return tuple(errors)


#: Failures a retry can cure (disk full, I/O error, database locked, connection lost).
TRANSIENT_ERRORS = _transient_errors()


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
        self._failed: deque[_Job] = deque()  # transient failures, oldest first, to retry
        self._outage_logged = False
        self._closing = False
        # A flush() is waiting: only then does a finished batch wake the event loop (a
        # call_soon_threadsafe per batch is a self-pipe write and a loop wake-up each tick).
        self._flush_wanted = False
        # Counters for /metrics (read without the lock; ints are updated atomically).
        self.writes_failed = 0
        self.writes_retried = 0  # failed writes that a retry saved
        self.writes_lost = 0  # failed writes dropped: the retry backlog was full
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

    def submit_checkpoint(self, checkpoint: Checkpoint, *, copy: bool = True) -> bool:
        """Queue (or coalesce) a checkpoint; False if it was dropped because the queue is full.

        The arrays are copied now, so the caller may keep mutating its state; ``copy=False``
        when they are already a private copy (``ColumnStore.export_state``) nobody mutates.
        """
        snapshot = _copy_checkpoint(checkpoint) if copy else checkpoint
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

    @property
    def writes_retrying(self) -> int:
        """Failed writes waiting for their retry (the backlog of an outage)."""
        return len(self._failed)

    async def flush(self) -> None:
        """Wait until every job submitted so far has run (or awaits its retry); raise if any
        write failed since the last flush or is still waiting for a retry."""
        await self._wait_completed()
        self._raise_for_failures()

    async def _wait_completed(self) -> None:
        with self._cond:
            target = self._submitted
            done = self._completed >= target
            if not done:
                self._flush_wanted = True
        if not done:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._flush_waiters.append((target, waiter))
            await waiter

    def _raise_for_failures(self) -> None:
        with self._cond:
            failures, last = self._failures_since_flush, self._last_failure
            self._failures_since_flush = 0
            retrying, lost = len(self._failed), self.writes_lost
            if not retrying:
                self._last_failure = None
        problems = []
        if failures:
            problems.append(f"{failures} storage write(s) failed since the last flush")
        if retrying:
            problems.append(f"{retrying} write(s) still failing (kept for retry)")
        if lost:
            problems.append(f"{lost} failed write(s) dropped (retry backlog full)")
        if problems:
            raise StorageError("; ".join(problems) + f"; last: {last}") from last

    async def close(self) -> None:
        """Flush, retry what failed once more, stop the thread and close the backend; raise
        StorageError only for what is lost. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._wait_completed()
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify()
            await self._stopped
            self._thread.join()  # already finished: _stopped is set as its last act
        self._raise_for_failures()

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
                if not self._jobs and not self._closing:
                    # Wake for new jobs, or after RETRY_INTERVAL_S to retry failed writes.
                    self._cond.wait(RETRY_INTERVAL_S if self._failed else None)
                closing_and_drained = self._closing and not self._jobs
            if closing_and_drained:
                self._retry_failed(storage)  # one last chance before we say what is lost
                return
            self._retry_failed(storage)  # older writes first: order is kept
            with self._cond:
                # Swap, don't copy (websockets' outbox idiom); taken jobs can't be coalesced.
                batch, self._jobs = self._jobs, deque()
                self._pending_checkpoints.clear()
                self._newest_seq_job = None
                batch_upto = self._submitted
            for job in batch:
                self._run_job(storage, job)
            with self._cond:
                self._completed = batch_upto
                wake = self._flush_wanted
            if wake:
                self._to_loop(self._wake_flushers, batch_upto)

    def _retry_failed(self, storage: Storage) -> None:
        """Run the kept writes in order; stop at the first that still fails transiently."""
        with self._cond:
            if not self._failed:
                return
            waiting, self._failed = list(self._failed), deque()
        for index, job in enumerate(waiting):
            try:
                job.run(storage)
            except FencedOut:
                self.writes_fenced += 1
                continue
            except TRANSIENT_ERRORS:
                with self._cond:
                    self._failed.extendleft(reversed(waiting[index:]))
                return
            except Exception as exc:
                self._count_permanent(job, exc)
                continue
            self.writes_retried += 1
            if isinstance(job, _CheckpointJob):
                self.checkpoints_written += 1
        if self._outage_logged:
            log.warning("storage writer: the backend works again; the backlog is written")
            self._outage_logged = False

    def _keep_for_retry(self, job: _Job) -> None:
        with self._cond:
            if len(self._failed) >= self._max_pending_jobs:
                self._failed.popleft()
                self.writes_lost += 1
            self._failed.append(job)

    def _count_permanent(self, job: _Job, exc: Exception) -> None:
        log.error("storage writer: %s failed: %s", _describe(job), exc)
        with self._cond:
            self.writes_failed += 1
            self._failures_since_flush += 1
            self._last_failure = exc

    def _run_job(self, storage: Storage, job: _Job) -> None:
        if self._failed and not isinstance(job, _ReadJob):
            self._keep_for_retry(job)  # an older write waits for its retry: queue behind it
            return
        try:
            job.run(storage)
        except FencedOut as exc:
            # Expected after a failover: another node owns the room now. One line, no trace;
            # not a failure of this store (flush() does not raise for it).
            self.writes_fenced += 1
            log.warning("storage writer: %s refused: %s", _describe(job), exc)
            return
        except TRANSIENT_ERRORS as exc:  # kept and retried; logged once per outage
            if not self._outage_logged:
                log.exception(
                    "storage writer: %s failed; retrying every %.0f s",
                    _describe(job),
                    RETRY_INTERVAL_S,
                )
                self._outage_logged = True
            with self._cond:
                self.writes_failed += 1
                self._last_failure = exc
            self._keep_for_retry(job)
            return
        except Exception as exc:  # permanent: logged, counted, surfaced by flush()
            self._count_permanent(job, exc)
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
        if not still_waiting:
            with self._cond:  # flush() registers on this (the loop) thread: no race here
                self._flush_wanted = False


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
