"""SnapshotReplicationSystem: capture the room's columns and hand each client its payload.

Runs last in the server tick (Stage.REPLICATE). One capture per tick, then one encode per
distinct (base, visibility) via :class:`~astranet.replication.SnapshotFanout`, so the cost
grows with distinct baselines, not clients; ``SnapshotFanout.shared_bases`` picks, among the
ids each client acked lately, a base most of the room's clients share. Delivery is a callback
on the subscriber: the system never touches a socket (the server's session shell queues the
message for its writer).

Many rooms (the server's tick): a room step given a :class:`ReplicationBatch` only captures and
plans here; the batch encodes the payloads of a chunk of rooms in one pass (their small deltas
share the numpy work) and then each room's system delivers, in the order the rooms stepped.

Subscribers are the connected players of the room; a disconnected player (seat held for
Resume) is skipped and its baseline reset, so its next snapshot is full.
Benchmark: benchmarks/fanout_tick.py (rooms in process), benchmarks/server_load.py (end to end).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import esper
import numpy as np

from astranet.game import SimContext
from astranet.replication import ClientBaseline, EncodedSnapshot, SnapshotFanout, SnapshotHistory
from astranet.replication.fanout import encode_jobs
from astranet.replication.interest import BudgetedEncoder, InterestBaseline, Relevance

__all__ = [
    "BATCH_ROOMS",
    "BATCH_WAIT_S",
    "InterestPolicy",
    "ReplicationBatch",
    "SnapshotReplicationSystem",
    "SnapshotSubscriber",
]


class SnapshotSubscriber(Protocol):
    """What the system needs of a client."""

    baseline: ClientBaseline | InterestBaseline
    net_id: int  # the avatar, passed to Game.relevance

    @property
    def visible(self) -> np.ndarray | None:
        """Interest mask over the current snapshot's rows (None: everything)."""

    def deliver(self, snapshot: EncodedSnapshot) -> None:
        """Take this tick's snapshot (called synchronously inside the tick; must not block)."""


@dataclass(frozen=True, slots=True)
class InterestPolicy:
    """Interest management for a room: the game's relevance hook and a per-tick byte budget."""

    encoder: BudgetedEncoder
    relevance: Callable[[SimContext, int], Relevance | None]
    budget_bytes: int  # per snapshot payload


class SnapshotReplicationSystem(esper.Processor):
    """Stage.REPLICATE: one capture per tick, one encode per distinct baseline.

    With an :class:`InterestPolicy`, subscribers whose baseline is an
    :class:`~astranet.replication.interest.InterestBaseline` get the budgeted encoder's payload
    of what the game's ``relevance`` hook says they may see instead.
    """

    def __init__(
        self,
        history: SnapshotHistory,
        fanout: SnapshotFanout,
        subscribers: Callable[[], Iterable[SnapshotSubscriber]],
        interest: InterestPolicy | None = None,
    ) -> None:
        self.history = history
        self.fanout = fanout
        self.subscribers = subscribers
        self.interest = interest
        self.payload_bytes = 0  # payload bytes handed to subscribers (a skipped one counts)
        #: Set for one step by Room.step(tick, batch): deliver when the batch flushes.
        self.batch: ReplicationBatch | None = None
        self._due = _NOTHING_DUE

    def process(self, sim: SimContext) -> None:
        """Capture, plan every subscriber's payload, then encode and deliver -- now, or when
        the :class:`ReplicationBatch` this tick's room step was given flushes."""
        snapshot = self.history.capture(sim.tick)
        fanout = self.fanout
        fanout.begin_tick(snapshot)
        interest = self.interest
        budgeted: list[SnapshotSubscriber] = []
        relevances: list[Relevance] = []
        if interest is None:
            plain = list(self.subscribers())
        else:
            plain = []
            for subscriber in self.subscribers():
                if isinstance(subscriber.baseline, InterestBaseline):
                    relevance = interest.relevance(sim, subscriber.net_id)
                    if relevance is None:
                        relevance = Relevance.everything(len(snapshot))
                    budgeted.append(subscriber)
                    relevances.append(relevance)
                    continue
                plain.append(subscriber)
        baselines = [subscriber.baseline for subscriber in plain]
        # Clients whose acks differ by a snapshot or two share one base (and one encode).
        bases = fanout.shared_bases(baselines)
        # Every client planned in one call (base picked, send recorded); the payloads are
        # encoded below when this room is alone, else by the batch, and deliver() hands them
        # out: the same payloads, in the same order, as encode_for client by client.
        keys = fanout.plan_many(baselines, [subscriber.visible for subscriber in plain], bases)
        batch, self.batch = self.batch, None
        encodeds: list[EncodedSnapshot] = []
        if interest is not None and budgeted:
            # Every budgeted client of the room in one vectorised plan and encode.
            encodeds = interest.encoder.encode_many(
                [s.baseline for s in budgeted],  # type: ignore[misc]
                snapshot,
                relevances,
                interest.budget_bytes,
            )
        self._due = (plain, keys, budgeted, encodeds)
        if batch is None:
            self.deliver()
        else:
            batch.add(self)

    def deliver(self) -> None:
        """Encode what is still planned and hand each subscriber its snapshot (once)."""
        plain, keys, budgeted, encodeds = self._due
        self._due = _NOTHING_DUE
        payloads = self.fanout.encoded_many(keys)  # encodes what no batch did
        for subscriber, encoded in zip(plain, payloads, strict=True):
            self.payload_bytes += len(encoded.payload)
            subscriber.deliver(encoded)
        for subscriber, encoded in zip(budgeted, encodeds, strict=True):
            self.payload_bytes += len(encoded.payload)
            subscriber.deliver(encoded)


log = logging.getLogger(__name__)

_NOTHING_DUE: tuple[list, list, list, list] = ([], [], [], [])

#: Rooms per batch: the first room's clients wait for the chunk's other steps (~60 us each at
#: cubes N=100) plus one encode, about 1 ms; 16 is past the batch's break-even (4-8 rooms).
BATCH_ROOMS = 16
#: ...or this long since the chunk's first room, whichever comes first (big rooms step slowly).
BATCH_WAIT_S = 0.002


class ReplicationBatch:
    """Rooms' replication systems that encode together: several rooms step, then one
    :func:`~astranet.replication.fanout.encode_jobs` encodes all their payloads and each
    system delivers. The server's tick (RoomHost.step_all) gives one to each room step and
    flushes it every ``max_rooms`` rooms or ``max_wait_s`` seconds, and at the end of the tick.
    """

    def __init__(
        self,
        max_rooms: int = BATCH_ROOMS,
        max_wait_s: float = BATCH_WAIT_S,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.max_rooms = max_rooms
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._systems: list[SnapshotReplicationSystem] = []
        self._since = 0.0

    def __len__(self) -> int:
        return len(self._systems)

    def add(self, system: SnapshotReplicationSystem) -> None:
        if not self._systems:
            self._since = self._clock()
        self._systems.append(system)

    def discard(self, system: SnapshotReplicationSystem) -> None:
        """Forget ``system``'s room (it failed after replicating): nothing is delivered."""
        if system in self._systems:
            self._systems.remove(system)
            system.fanout.take_pending()
            system._due = _NOTHING_DUE

    def due(self) -> bool:
        """Whether the chunk is full (rooms or time) and should be flushed now."""
        systems = self._systems
        return bool(systems) and (
            len(systems) >= self.max_rooms or self._clock() - self._since >= self.max_wait_s
        )

    def flush(self) -> list[SnapshotReplicationSystem]:
        """Encode every added room's planned payloads in one pass, then deliver room by room.

        Returns the systems whose delivery raised (logged here): their rooms failed, the
        other rooms of the chunk got their snapshots. If the batched pass itself raises, each
        room encodes its own payloads, so only the room at fault fails.
        """
        systems, self._systems = self._systems, []
        if not systems:
            return []
        jobs = [job for system in systems for job in system.fanout.take_pending()]
        try:
            encode_jobs(jobs)
        except Exception:
            log.exception("batched snapshot encode raised; encoding room by room")
            for job in jobs:
                job.fanout.requeue(job)
        failed = []
        for system in systems:
            try:
                system.deliver()
            except Exception:
                log.exception("snapshot delivery raised")
                failed.append(system)
        return failed
