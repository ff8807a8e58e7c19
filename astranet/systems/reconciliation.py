"""Server truth on the client: SnapshotReceiveSystem (RECEIVE) and ReconciliationSystem
(RECONCILE).

* :class:`SnapshotReceiveSystem` drains the snapshots the network shell received, applies each
  to the :class:`~astranet.replication.Replica` (decode against the acked base), acks it, and
  lists the ones that became current on ``frame.applied`` with the replica's rows, flattened
  (:func:`astranet.replication.prediction.read_rows`). A payload that does not decode is
  counted and not acked (the server keeps sending deltas against an older acked base).
* :class:`ReconciliationSystem` compares, for every applied snapshot in order, the server's row
  of the local avatar with the prediction recorded for the snapshot's ``last_input_seq``
  (:func:`~astranet.replication.prediction.compare_prediction`); then rebuilds the predicted
  store from the newest snapshot. On a mismatch it rewinds the avatar to the server state and
  replays the unacknowledged inputs with the game's ``apply_input``; otherwise it keeps the
  prediction. A correction feeds the :class:`CorrectionSmoother` so the displayed avatar
  glides.

Why the store is rebuilt every snapshot: remote rows in the predicted store must be the
server's newest, in case the game's step reads them (collisions); the local row is then
restored (match) or replayed (mismatch). Cost: one copy of the columns per snapshot.
Limits: ``MAX_ERROR_SAMPLES`` recent errors and corrections kept for stats.
Benchmark: benchmarks/netcode_feel.py.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import esper
import numpy as np

from astranet.errors import SnapshotDecodeError
from astranet.game import Game
from astranet.replication import Replica
from astranet.replication.prediction import (
    CorrectionSmoother,
    compare_prediction,
    read_rows,
    row_of,
    write_row,
)
from astranet.systems.contract import AppliedSnapshot, ReceivedSnapshot

if TYPE_CHECKING:
    from astranet.systems.contract import ClientFrame, ClientLink, LocalPlayer

__all__ = [
    "MAX_ERROR_SAMPLES",
    "AppliedSnapshot",
    "ReceivedSnapshot",
    "ReconciliationStats",
    "ReconciliationSystem",
    "SnapshotReceiveSystem",
]

# 4096 samples ~ 2 min of 30 Hz snapshots: enough for a benchmark run's distribution.
MAX_ERROR_SAMPLES = 4096


class SnapshotReceiveSystem(esper.Processor):
    """Stage.RECEIVE (order 1): apply arrived snapshots to the replica, ack, list them."""

    def __init__(self, link: ClientLink, replica: Replica, local: LocalPlayer) -> None:
        self.link = link
        self.replica = replica
        self.local = local
        self.epoch: int | None = None
        self.decode_failures = 0
        self.applied_total = 0

    def process(self, frame: ClientFrame) -> None:
        for received in self.link.drain_snapshots():
            if received.epoch != self.epoch:
                frame.reconnected = self.epoch is not None
                self.epoch = received.epoch
                self.local.net_id = received.entity
            try:
                update = self.replica.apply(
                    received.snapshot_id,
                    received.base_id,
                    received.payload,
                    received.compressed,
                    received.server_tick,
                )
            except SnapshotDecodeError:
                self.decode_failures += 1
                continue
            self.link.ack(received.snapshot_id)
            if not update.is_latest:
                continue
            self.applied_total += 1
            store = self.replica.store
            frame.applied.append(
                AppliedSnapshot(
                    received.snapshot_id,
                    received.server_tick,
                    received.last_input_seq,
                    received.arrival_ms,
                    store.net_ids.copy(),
                    read_rows(store),
                )
            )


@dataclass(slots=True)
class ReconciliationStats:
    """Counters of what reconciliation did (read by tests, the demo and the benchmark)."""

    compared: int = 0  # snapshots whose last_input_seq was compared with a prediction
    exact: int = 0  # ... of which agreed within the tolerance
    rewinds: int = 0  # corrections: rewind + replay
    replayed_inputs: int = 0
    max_error: float = 0.0
    errors: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_ERROR_SAMPLES))
    corrections: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_ERROR_SAMPLES))


class ReconciliationSystem(esper.Processor):
    """Stage.RECONCILE: compare with the server, rewind and replay on a mismatch."""

    def __init__(
        self,
        game: Game,
        replica: Replica,
        local: LocalPlayer,
        smoother: CorrectionSmoother,
        *,
        tolerance: float = 0.0,
    ) -> None:
        self.game = game
        self.replica = replica
        self.local = local
        self.smoother = smoother
        self.tolerance = tolerance
        self.stats = ReconciliationStats()

    def process(self, frame: ClientFrame) -> None:
        local = self.local
        if frame.reconnected:
            # The server dropped whatever inputs it had not applied when the socket died.
            local.history.clear()
        if not frame.applied or local.net_id is None:
            return
        net_id = local.net_id
        # A new session: adopt the server's state (the history was just cleared).
        rewind = frame.reconnected
        for applied in frame.applied:
            server_state = row_of(applied.net_ids, applied.rows, net_id)
            if server_state is None:
                continue
            outcome = compare_prediction(
                local.history, applied.last_input_seq, server_state, tolerance=self.tolerance
            )
            rewind |= outcome.rewind
            if outcome.compared and math.isfinite(outcome.error):
                self._count(outcome.error)
        before = local.state() if local.ready else None
        store = local.sim.store
        store.replace_all(self.replica.store.net_ids, self.replica.store.columns())
        local.ready = bool(store.contains([net_id])[0])
        if not local.ready:
            return
        if rewind or before is None:
            self._replay(net_id)
        else:
            newest_prediction = local.history.newest
            write_row(store, net_id, newest_prediction.state if newest_prediction else before)
        if rewind and before is not None:
            after = local.state()
            self.smoother.correct(frame.now_ms, before, after)
            self.stats.rewinds += 1
            self.stats.corrections.append(float(np.abs(before - after).max(initial=0.0)))

    def _replay(self, net_id: int) -> None:
        local, game = self.local, self.game
        pending = local.history.pending()
        for entry in pending:
            game.apply_input(local.sim, net_id, entry.command)
            local.history.restate(entry.seq, local.state())
        self.stats.replayed_inputs += len(pending)

    def _count(self, error: float) -> None:
        stats = self.stats
        stats.compared += 1
        stats.exact += error <= self.tolerance
        stats.max_error = max(stats.max_error, error)
        stats.errors.append(error)
