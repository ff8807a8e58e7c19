"""Client replica: decode snapshot payloads against kept bases and apply them.

Operations: :meth:`Replica.apply` takes the fields of a ``Snapshot`` message, decodes the
payload against the snapshot named by ``base_id`` (which this client acked and therefore kept),
keeps the result so it can serve as a later base, and — if it is the newest — writes it into
the client's :class:`~astranet.ecs.store.ColumnStore` (dequantized) and reports the spawned and
despawned net ids (optionally straight into an :class:`~astranet.ecs.world.EntityMirror`).
After a successful apply the client should ``Ack`` ``snapshot_id``.

Goals: any acked base in the server's ring is still here (keep >= the server's ring size);
lost or out-of-order snapshots never corrupt state (an older one is kept as a possible base but
does not roll the store back); a payload that fails to decode changes nothing.
Limits: ``keep`` decoded snapshots (DEFAULT_RING); decode limits as in astranet.replication.codec.
Benchmark: benchmarks/test_bench_replication.py (decode).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from astranet.ecs.schema import Schema
from astranet.ecs.store import ColumnStore
from astranet.ecs.world import EntityMirror
from astranet.errors import SnapshotDecodeError
from astranet.replication.codec import decode_payload
from astranet.replication.snapshot import DEFAULT_RING, Snapshot

__all__ = ["Replica", "ReplicaUpdate"]

_NO_IDS = np.zeros(0, dtype=np.uint32)
_NO_IDS.flags.writeable = False


@dataclass(frozen=True, slots=True)
class ReplicaUpdate:
    """What one apply did: the decoded snapshot, and whether it became the current state."""

    snapshot: Snapshot
    is_latest: bool
    spawned: np.ndarray  # net ids new in the current state (empty unless is_latest)
    despawned: np.ndarray  # net ids gone from the current state (empty unless is_latest)


class Replica:
    """A client's copy of one room's replicated state."""

    def __init__(
        self,
        schema: Schema,
        *,
        keep: int = DEFAULT_RING,
        store: ColumnStore | None = None,
        mirror: EntityMirror | None = None,
    ) -> None:
        self.schema = schema
        self.keep = keep
        self.store = store if store is not None else ColumnStore(schema)
        self.mirror = mirror
        self.latest: Snapshot | None = None
        self._kept: dict[int, Snapshot] = {}

    def base(self, snapshot_id: int) -> Snapshot | None:
        """A kept snapshot by id (None if never received or already evicted)."""
        return self._kept.get(snapshot_id)

    def apply(
        self,
        snapshot_id: int,
        base_id: int | None,
        payload: bytes,
        compressed: bool,
        server_tick: int = 0,
    ) -> ReplicaUpdate:
        """Decode and apply one ``Snapshot`` message; raises SnapshotDecodeError (or its
        subclass DesyncError) without changing anything if it cannot.

        ``server_tick`` is the message's: a predicted payload extrapolates the kept snapshots
        by their ticks, so it must be the real one (kept snapshots remember it).
        """
        base = None
        if base_id is not None:
            base = self._kept.get(base_id)
            if base is None:
                raise SnapshotDecodeError(f"unknown base snapshot {base_id}")
        state = decode_payload(
            self.schema,
            payload,
            compressed,
            base,
            snapshot_id=snapshot_id,
            tick=server_tick,
            kept=self._kept.get,
        )
        self._kept[snapshot_id] = state
        if len(self._kept) > self.keep:
            del self._kept[min(self._kept)]  # evict the oldest id, not the oldest arrival
        if self.latest is not None and snapshot_id <= self.latest.id:
            return ReplicaUpdate(state, False, _NO_IDS, _NO_IDS)
        previous = self.latest.net_ids if self.latest is not None else _NO_IDS
        spawned = np.setdiff1d(state.net_ids, previous, assume_unique=True)
        despawned = np.setdiff1d(previous, state.net_ids, assume_unique=True)
        self.latest = state
        self.store.replace_all(state.net_ids, state.dequantize(self.schema))
        if self.mirror is not None:
            self.mirror.sync(spawned, despawned)
        return ReplicaUpdate(state, True, spawned, despawned)
