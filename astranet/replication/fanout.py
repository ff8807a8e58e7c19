"""Encode once, fan out: one payload per distinct (base, visibility) per tick, shared by clients.

Operations (server, once per room tick, after ``SnapshotHistory.capture``)::

    fanout.begin_tick(snapshot)                      # clears last tick's cache
    for client in clients:
        out = fanout.encode_for(client.baseline)     # EncodedSnapshot -> Snapshot message
    ...
    client.baseline.ack(msg.snapshot_id)             # on every Ack message

Many rooms at once (the server's tick): ``plan_for`` instead of ``encode_for`` (the base is
picked and the send recorded; the encode waits), then one :func:`encode_jobs` over every
room's ``take_pending()`` jobs, then ``encoded(key)`` per client. Same bytes: the small deltas
of all rooms share one vectorised pass (:mod:`astranet.replication.rooms_codec`).

:class:`ClientBaseline` is the per-client memory the server needs: which snapshot ids it sent
that client (and with which visibility mask, because a delta must be relative to what the
client actually decoded), and the newest id the client acked. ``encode_for`` picks that acked
snapshot as base if it is still in the ring, else sends a full snapshot (``base_id`` None).

Shared bases (:meth:`SnapshotFanout.shared_bases`): WIRE rule 4 lets ``base_id`` be *any* id the
client acked, not only its newest. A room's clients ack at slightly different moments (their
inputs, which carry the acks, arrive spread over the period), so their newest acks are often one
or two snapshots apart and each distinct base costs a full delta encode. Per tick the room picks
the base acked by the most clients among each client's last ``MAX_SHARED_BASE_LAG + 1`` snapshot
ids (ties: the newest), so typically all clients share one encode; a client's delta then spans
at most ``MAX_SHARED_BASE_LAG`` more snapshots than necessary (cubes N=100: 2-5 bytes more).

Goals: cost grows with distinct baselines, not clients (N clients acking the same id share one
encode and one ``bytes`` object); a client that acked the shared base costs a few dict look-ups;
an interest filter is a per-client bool mask over the snapshot's rows, with no codec change.
Limits: a baseline remembers at most ``capacity`` sent ids (default the ring size, DEFAULT_RING);
the per-tick cache holds at most one entry per client.
Benchmark: benchmarks/fanout_tick.py (rooms of 4 clients with mixed acks, in process),
benchmarks/tick.py (4 clients, distinct bases).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, cast

import numpy as np

from astranet.ecs.schema import Schema
from astranet.errors import InvalidState
from astranet.replication.codec import can_predict, compress_payload, encode_delta
from astranet.replication.rooms_codec import encode_same_rows
from astranet.replication.snapshot import DEFAULT_RING, Snapshot, SnapshotHistory

__all__ = [
    "MAX_PREDICTION_SPAN",
    "MAX_SHARED_BASE_LAG",
    "MIN_BATCH_JOBS",
    "PREDICTED_DELTAS_ENV",
    "ClientBaseline",
    "EncodeJob",
    "EncodedSnapshot",
    "SnapshotFanout",
    "encode_jobs",
    "predicted_deltas_enabled",
]

#: How many snapshots older than a client's newest ack its shared base may be. Each one costs
#: about a bit per moving component (deltas span more ticks); 2 covers acks spread over one
#: period plus one late tick.
MAX_SHARED_BASE_LAG = 2
#: A prediction snapshot is at most this many ids older than the current one (the client keeps
#: its newest DEFAULT_RING = 64 snapshots; half of that leaves room for ones still in flight).
MAX_PREDICTION_SPAN = 32


#: Environment variable that turns predicted deltas on for every room of a process ("1").
PREDICTED_DELTAS_ENV = "ASTRANET_PREDICTED_DELTAS"


def predicted_deltas_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``ASTRANET_PREDICTED_DELTAS`` asks for predicted deltas (``1``/``true``/``yes``)."""
    value = (os.environ if environ is None else environ).get(PREDICTED_DELTAS_ENV, "")
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class EncodedSnapshot:
    """The snapshot-specific fields of a ``Snapshot`` wire message."""

    id: int
    server_tick: int
    base_id: int | None
    compressed: bool
    payload: bytes


class ClientBaseline:
    """Server-side replication state of one client: sent ids (+ visibility) and its acks."""

    __slots__ = ("_acked", "_sent", "acked_id", "capacity")

    def __init__(self, capacity: int = DEFAULT_RING) -> None:
        self.capacity = capacity
        self.acked_id: int | None = None  # the newest acked id
        # id -> visibility mask used when it was sent (None = everything); oldest first.
        self._sent: OrderedDict[int, np.ndarray | None] = OrderedDict()
        self._acked: set[int] = set()  # acked ids still in _sent (any may serve as a base)

    def record_sent(self, snapshot_id: int, visible: np.ndarray | None) -> None:
        """Remember that ``snapshot_id`` went to this client with that visibility."""
        sent = self._sent
        sent[snapshot_id] = visible
        while len(sent) > self.capacity:
            self._acked.discard(sent.popitem(last=False)[0])

    def ack(self, snapshot_id: int) -> bool:
        """Record an ``Ack``; returns False (and ignores it) for an id we never sent or forgot.

        Acks may arrive out of order; the newest acked id wins, since the client keeps every
        snapshot it received within the ring.
        """
        if snapshot_id not in self._sent:
            return False
        self._acked.add(snapshot_id)
        if self.acked_id is None or snapshot_id > self.acked_id:
            self.acked_id = snapshot_id
        return True

    def acked(self, snapshot_id: int) -> bool:
        """Whether the client acked ``snapshot_id`` (and we still remember sending it)."""
        return snapshot_id in self._acked

    def reset(self) -> None:
        """Forget everything (e.g. on Resume): the next snapshot will be full."""
        self.acked_id = None
        self._sent.clear()
        self._acked.clear()

    def visibility_of(self, snapshot_id: int) -> np.ndarray | None:
        return self._sent.get(snapshot_id)


def _mask_key(visible: np.ndarray | None) -> bytes | None:
    # The mask's bytes are an exact key (no hash collisions), ~n/8 bytes once packed.
    return None if visible is None else np.packbits(visible).tobytes() + len(visible).to_bytes(4)


_FULL_KEY: tuple = (None, None, None)  # a full payload of everything


class SnapshotFanout:
    """Per-room encoder with a per-tick cache keyed by (base id, base view, current view)."""

    def __init__(
        self,
        schema: Schema,
        history: SnapshotHistory,
        *,
        checksum: bool = False,
        compress: bool = True,
        predict: bool | None = None,
    ) -> None:
        self.schema = schema
        self.history = history
        self.checksum = checksum
        self.compress = compress
        # Deltas against a constant-velocity prediction from the base and the snapshot before
        # it (payload flag PREDICTED). Off by default: ~10-25 % fewer bytes for moving rooms,
        # ~30 % more encode time (docs/benchmarks.md, "Snapshot bytes").
        self.predict = predicted_deltas_enabled() if predict is None else predict
        self.encodes = 0  # payloads actually encoded (for tests and metrics)
        self.deliveries = 0  # encode_for calls: one per client per tick
        self._drained = (0, 0)  # (encodes, deliveries) at the last drain_counts()
        self._current: Snapshot | None = None
        # This tick's payloads by key; None: planned, not encoded yet (a job in _pending).
        self._cache: dict[tuple, EncodedSnapshot | None] = {}
        self._pending: list[EncodeJob] = []

    def begin_tick(self, snapshot: Snapshot) -> None:
        """Start fanning out ``snapshot`` (the one just captured); drops last tick's cache."""
        self._current = snapshot
        self._cache.clear()
        self._pending.clear()

    def drain_counts(self) -> tuple[int, int]:
        """``(encodes, deliveries)`` since the previous call (for /metrics); totals stay."""
        encodes, deliveries = self._drained
        self._drained = (self.encodes, self.deliveries)
        return self.encodes - encodes, self.deliveries - deliveries

    def shared_bases(self, clients: Sequence[ClientBaseline]) -> list[int | None]:
        """A base id per client (its argument for ``encode_for``) so that few encodes serve all.

        Greedy: the id acked by the most clients that have it among their newest
        ``MAX_SHARED_BASE_LAG + 1`` ids still in the ring (ties: the newer id) is the base of
        all of them; repeat with the rest. A client with no acked id in the ring gets None (a
        full snapshot). When every client's newest ack is the same id, that is the answer.
        """
        if not clients:
            return []
        newest = [client.acked_id for client in clients]
        # Every room asks this every tick: list methods and plain loops, no generators.
        if newest.count(newest[0]) == len(newest):
            return newest
        history = self.history
        if None not in newest:
            # The usual split (acks one or two apart): everyone acked the oldest newest ack,
            # so it has every vote and the greedy pass below would pick it too.
            acked = cast(list[int], newest)  # no None, checked above
            low = min(acked)
            if max(acked) - low <= MAX_SHARED_BASE_LAG and low in history:
                for client in clients:
                    if low not in client._acked:
                        break
                else:
                    return [low] * len(clients)
        choices: list[list[int]] = []
        for client, top in zip(clients, newest, strict=True):
            if top is None:
                choices.append([])
                continue
            choices.append(
                [
                    snapshot_id
                    for snapshot_id in range(top, top - MAX_SHARED_BASE_LAG - 1, -1)
                    if snapshot_id in client._acked and snapshot_id in history
                ]
            )
        bases: list[int | None] = [None] * len(clients)
        left = [i for i, ids in enumerate(choices) if ids]
        while left:
            votes: dict[int, int] = {}
            for i in left:
                for snapshot_id in choices[i]:
                    votes[snapshot_id] = votes.get(snapshot_id, 0) + 1
            best = max(votes, key=lambda snapshot_id: (votes[snapshot_id], snapshot_id))
            rest = []
            for i in left:
                if best in choices[i]:
                    bases[i] = best
                else:
                    rest.append(i)
            left = rest
        return bases

    def prediction_source(
        self, client: ClientBaseline, base: Snapshot | None, current: Snapshot
    ) -> Snapshot | None:
        """The snapshot just before ``base``, if this client acked it and surely still keeps it.

        The client keeps its newest DEFAULT_RING received snapshots; within
        MAX_PREDICTION_SPAN of the current id, an acked one cannot have been evicted.
        """
        if base is None or not self.predict:
            return None
        prev_id = base.id - 1
        if current.id - prev_id > MAX_PREDICTION_SPAN or prev_id not in client._acked:
            return None
        prev = self.history.get(prev_id)
        return prev if prev is not None and can_predict(prev, base, current.tick) else None

    def plan_for(
        self,
        client: ClientBaseline,
        visible: np.ndarray | None = None,
        base_id: int | None = None,
    ) -> tuple:
        """:meth:`encode_for` in two halves: this one picks the base, records the send in
        ``client`` and returns the payload's cache key; the payload itself is encoded by
        :meth:`encode_pending` or, for many rooms at once, by :func:`encode_jobs`. Fetch it
        with :meth:`encoded`. Clients with the same key share one job.
        """
        current = self._current
        if current is None:
            raise InvalidState("encode_for() before begin_tick()")
        view_key = None
        if visible is not None:
            visible = np.asarray(visible, dtype=bool)
            if visible.shape != (len(current),):
                raise InvalidState(f"visibility mask shape {visible.shape} != ({len(current)},)")
            view_key = _mask_key(visible)
        if base_id is None or base_id not in client._acked:
            base_id = client.acked_id
        base = self.history.get(base_id)
        prev = self.prediction_source(client, base, current) if self.predict else None
        if base is None:
            key: tuple = (None, None, view_key)
            base_visible = None
        else:
            base_visible = client._sent.get(base.id)
            base_key = None if base_visible is None else _mask_key(base_visible)
            key = (base.id, base_key, view_key)
            if prev is not None:
                prev_visible = client._sent.get(prev.id)
                key += (prev.id, None if prev_visible is None else _mask_key(prev_visible))
        if key not in self._cache:
            self._cache[key] = None
            self._pending.append(
                EncodeJob(
                    self,
                    key,
                    current.select(visible),
                    base.select(base_visible) if base is not None else None,
                    prev.select(client._sent.get(prev.id)) if prev is not None else None,
                )
            )
        client.record_sent(current.id, visible)
        self.deliveries += 1
        return key

    def plan_many(
        self,
        clients: Sequence[ClientBaseline],
        visibles: Sequence[np.ndarray | None],
        bases: Sequence[int | None],
    ) -> list[tuple]:
        """:meth:`plan_for` of each ``(client, visible, base_id)``: the same keys, jobs and
        records. Every room plans each client every tick, so the common case -- a plain
        :class:`ClientBaseline` that sees everything, no prediction -- is one loop here with
        the look-ups inlined, not four calls per client; any other client goes through
        :meth:`plan_for`."""
        current = self._current
        if current is None:
            raise InvalidState("encode_for() before begin_tick()")
        if self.predict:
            return [
                self.plan_for(client, visible, base_id)
                for client, visible, base_id in zip(clients, visibles, bases, strict=True)
            ]
        get = self.history.lookup
        cache = self._cache
        current_id = current.id
        keys: list[tuple] = []
        planned = 0  # plan_for counts its own deliveries
        for client, visible, base_id in zip(clients, visibles, bases, strict=True):
            if visible is not None or type(client) is not ClientBaseline:
                keys.append(self.plan_for(client, visible, base_id))
                continue
            sent = client._sent
            if base_id is None or base_id not in client._acked:
                base_id = client.acked_id
            base = get(base_id)
            if base is None:
                key: tuple = _FULL_KEY
                base_view = None
            else:
                base_visible = sent.get(base_id)
                if base_visible is None:
                    key = (base_id, None, None)
                    base_view = base
                else:
                    key = (base_id, _mask_key(base_visible), None)
                    base_view = base.select(base_visible)
            if key not in cache:
                cache[key] = None
                self._pending.append(EncodeJob(self, key, current, base_view, None))
            client.record_sent(current_id, None)
            keys.append(key)
            planned += 1
        self.deliveries += planned
        return keys

    def take_pending(self) -> list[EncodeJob]:
        """The jobs planned since the last call (each is handed out once)."""
        pending, self._pending = self._pending, []
        return pending

    def fill(self, job: EncodeJob, raw: bytes) -> None:
        """Store ``job``'s uncompressed payload (compressed here when that is smaller)."""
        payload, compressed = compress_payload(raw) if self.compress else (raw, False)
        current = job.current  # the client's view: same id and tick
        self._cache[job.key] = EncodedSnapshot(
            current.id, current.tick, job.key[0], compressed, payload
        )
        self.encodes += 1

    def requeue(self, job: EncodeJob) -> None:
        """Give back a job taken by :meth:`take_pending` if it was not filled (a batched pass
        that raised): the next :meth:`encode_pending` encodes it."""
        cache = self._cache
        if job.fanout is self and job.key in cache and cache[job.key] is None:
            self._pending.append(job)

    def encode_pending(self) -> None:
        """Encode this fan-out's planned jobs one by one (what :func:`encode_jobs` batches)."""
        for job in self.take_pending():
            self.fill(job, job.encode_one())

    def encoded(self, key: tuple) -> EncodedSnapshot:
        """The payload planned under ``key`` this tick (after it was encoded)."""
        encoded = self._cache.get(key)
        if encoded is None:
            raise InvalidState("encoded() of a payload not encoded yet (encode_pending first)")
        return encoded

    def encoded_many(self, keys: Sequence[tuple]) -> list[EncodedSnapshot]:
        """:meth:`encoded` of each key, after encoding whatever is still planned."""
        if self._pending:
            self.encode_pending()
        cache = self._cache
        # Every job of this tick is filled now (a job taken by a batch is filled or requeued).
        return [cache[key] for key in keys]  # type: ignore[misc]

    def encode_for(
        self,
        client: ClientBaseline,
        visible: np.ndarray | None = None,
        base_id: int | None = None,
    ) -> EncodedSnapshot:
        """The message fields for ``client`` this tick (shared with clients of the same key).

        ``visible`` is a bool mask over the current snapshot's rows (None: all rows).
        ``base_id`` (from :meth:`shared_bases`) is used as the base when the client acked it
        and it is still in the ring; otherwise the client's newest ack is (None: that one).
        Records the send in ``client`` so a later ack of this id can serve as a base.
        """
        key = self.plan_for(client, visible, base_id)
        encoded = self._cache[key]
        if encoded is None:
            self.encode_pending()
            encoded = self._cache[key]
        return encoded  # type: ignore[return-value]  # encode_pending filled it


class EncodeJob(NamedTuple):
    """One payload a fan-out planned this tick: the client views it is the delta of."""

    fanout: SnapshotFanout
    key: tuple
    current: Snapshot  # the client's view of this tick's snapshot
    base: Snapshot | None  # its view of the base (None: a full payload)
    prev: Snapshot | None  # its view of the prediction snapshot (None: no prediction)

    def encode_one(self) -> bytes:
        """The uncompressed payload, by :func:`encode_delta`."""
        fanout = self.fanout
        return encode_delta(
            fanout.schema, self.current, self.base, checksum=fanout.checksum, prev=self.prev
        )


#: Fewest jobs of one schema worth the batched path: its fixed cost (~40 us) is two
#: encode_delta calls (benchmarks/fanout_tick.py --compare).
MIN_BATCH_JOBS = 4


def encode_jobs(jobs: Sequence[EncodeJob]) -> None:
    """Encode many fan-outs' planned jobs (several rooms') and fill each fan-out's cache.

    Byte for byte what :meth:`SnapshotFanout.encode_pending` would give: deltas in the scope
    of :func:`~astranet.replication.rooms_codec.encode_same_rows` (same rows as the base, no
    checksum, no prediction) share one vectorised pass per schema; the rest, and whatever that
    pass hands back, go through ``encode_delta`` one by one.
    """
    groups: dict[int, list[EncodeJob]] = {}
    for job in jobs:
        fanout = job.fanout
        if job.base is None or job.prev is not None or fanout.checksum:
            fanout.fill(job, job.encode_one())
        else:
            groups.setdefault(id(fanout.schema), []).append(job)
    for group in groups.values():
        if len(group) < MIN_BATCH_JOBS:
            for job in group:
                job.fanout.fill(job, job.encode_one())
            continue
        raws = encode_same_rows(
            group[0].fanout.schema,
            [job.current for job in group],
            [job.base for job in group],  # type: ignore[misc]  # None went the other way
        )
        for job, raw in zip(group, raws, strict=True):
            job.fanout.fill(job, job.encode_one() if raw is None else raw)
