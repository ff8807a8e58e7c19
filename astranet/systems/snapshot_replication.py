"""SnapshotReplicationSystem: capture the room's columns and hand each client its payload.

Runs last in the server tick (Stage.REPLICATE). One capture per tick, then one encode per
distinct (base, visibility) via :class:`~astranet.replication.SnapshotFanout`, so the cost
grows with distinct baselines, not clients; ``SnapshotFanout.shared_bases`` picks, among the
ids each client acked lately, a base most of the room's clients share. Delivery is a callback
on the subscriber: the system never touches a socket (the server's session shell queues the
message for its writer).

Subscribers are the connected players of the room; a disconnected player (seat held for
Resume) is skipped and its baseline reset, so its next snapshot is full.
Benchmark: benchmarks/fanout_tick.py (rooms in process), benchmarks/server_load.py (end to end).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import esper
import numpy as np

from astranet.game import SimContext
from astranet.replication import ClientBaseline, EncodedSnapshot, SnapshotFanout, SnapshotHistory
from astranet.replication.interest import BudgetedEncoder, InterestBaseline, Relevance

__all__ = ["InterestPolicy", "SnapshotReplicationSystem", "SnapshotSubscriber"]


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

    def process(self, sim: SimContext) -> None:
        snapshot = self.history.capture(sim.tick)
        fanout = self.fanout
        fanout.begin_tick(snapshot)
        interest = self.interest
        plain: list[SnapshotSubscriber] = []
        budgeted: list[SnapshotSubscriber] = []
        relevances: list[Relevance] = []
        for subscriber in self.subscribers():
            baseline = subscriber.baseline
            if interest is not None and isinstance(baseline, InterestBaseline):
                relevance = interest.relevance(sim, subscriber.net_id)
                if relevance is None:
                    relevance = Relevance.everything(len(snapshot))
                budgeted.append(subscriber)
                relevances.append(relevance)
                continue
            plain.append(subscriber)
        # Clients whose acks differ by a snapshot or two share one base (and one encode).
        bases = fanout.shared_bases([subscriber.baseline for subscriber in plain])
        for subscriber, base_id in zip(plain, bases, strict=True):
            encoded = fanout.encode_for(subscriber.baseline, subscriber.visible, base_id)
            self.payload_bytes += len(encoded.payload)
            subscriber.deliver(encoded)
        if interest is not None and budgeted:
            # Every budgeted client of the room in one vectorised plan and encode.
            baselines = [s.baseline for s in budgeted]
            encodeds = interest.encoder.encode_many(
                baselines,  # type: ignore[arg-type]
                snapshot,
                relevances,
                interest.budget_bytes,
            )
            for subscriber, encoded in zip(budgeted, encodeds, strict=True):
                self.payload_bytes += len(encoded.payload)
                subscriber.deliver(encoded)
