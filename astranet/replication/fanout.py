"""Encode once, fan out: one payload per distinct (base, visibility) per tick, shared by clients.

Operations (server, once per room tick, after ``SnapshotHistory.capture``)::

    fanout.begin_tick(snapshot)                      # clears last tick's cache
    for client in clients:
        out = fanout.encode_for(client.baseline)     # EncodedSnapshot -> Snapshot message
    ...
    client.baseline.ack(msg.snapshot_id)             # on every Ack message

:class:`ClientBaseline` is the per-client memory the server needs: which snapshot ids it sent
that client (and with which visibility mask, because a delta must be relative to what the
client actually decoded), and the newest id the client acked. ``encode_for`` picks that acked
snapshot as base if it is still in the ring, else sends a full snapshot (``base_id`` None).

Goals: cost grows with distinct baselines, not clients (N clients acking the same id share one
encode and one ``bytes`` object); an interest filter is a per-client bool mask over the
snapshot's rows, with no codec change.
Limits: a baseline remembers at most ``capacity`` sent ids (default the ring size, DEFAULT_RING);
the per-tick cache holds at most one entry per client.
Benchmark: benchmarks/tick.py (4 clients, distinct bases).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from astranet.ecs.schema import Schema
from astranet.errors import InvalidState
from astranet.replication.codec import encode_payload
from astranet.replication.snapshot import DEFAULT_RING, Snapshot, SnapshotHistory

__all__ = ["ClientBaseline", "EncodedSnapshot", "SnapshotFanout"]


@dataclass(frozen=True, slots=True)
class EncodedSnapshot:
    """The snapshot-specific fields of a ``Snapshot`` wire message."""

    id: int
    server_tick: int
    base_id: int | None
    compressed: bool
    payload: bytes


class ClientBaseline:
    """Server-side replication state of one client: sent ids (+ visibility) and its newest ack."""

    __slots__ = ("_sent", "acked_id", "capacity")

    def __init__(self, capacity: int = DEFAULT_RING) -> None:
        self.capacity = capacity
        self.acked_id: int | None = None
        # id -> visibility mask used when it was sent (None = everything); oldest first.
        self._sent: OrderedDict[int, np.ndarray | None] = OrderedDict()

    def record_sent(self, snapshot_id: int, visible: np.ndarray | None) -> None:
        """Remember that ``snapshot_id`` went to this client with that visibility."""
        self._sent[snapshot_id] = visible
        while len(self._sent) > self.capacity:
            self._sent.popitem(last=False)

    def ack(self, snapshot_id: int) -> bool:
        """Record an ``Ack``; returns False (and ignores it) for an id we never sent or forgot.

        Acks may arrive out of order; the newest acked id wins, since the client keeps every
        snapshot it received within the ring.
        """
        if snapshot_id not in self._sent:
            return False
        if self.acked_id is None or snapshot_id > self.acked_id:
            self.acked_id = snapshot_id
        return True

    def reset(self) -> None:
        """Forget everything (e.g. on Resume): the next snapshot will be full."""
        self.acked_id = None
        self._sent.clear()

    def visibility_of(self, snapshot_id: int) -> np.ndarray | None:
        return self._sent.get(snapshot_id)


def _mask_key(visible: np.ndarray | None) -> bytes | None:
    # The mask's bytes are an exact key (no hash collisions), ~n/8 bytes once packed.
    return None if visible is None else np.packbits(visible).tobytes() + len(visible).to_bytes(4)


class SnapshotFanout:
    """Per-room encoder with a per-tick cache keyed by (base id, base view, current view)."""

    def __init__(
        self,
        schema: Schema,
        history: SnapshotHistory,
        *,
        checksum: bool = False,
        compress: bool = True,
    ) -> None:
        self.schema = schema
        self.history = history
        self.checksum = checksum
        self.compress = compress
        self.encodes = 0  # payloads actually encoded (for tests and metrics)
        self._current: Snapshot | None = None
        self._cache: dict[tuple[int | None, bytes | None, bytes | None], EncodedSnapshot] = {}

    def begin_tick(self, snapshot: Snapshot) -> None:
        """Start fanning out ``snapshot`` (the one just captured); drops last tick's cache."""
        self._current = snapshot
        self._cache.clear()

    def encode_for(
        self, client: ClientBaseline, visible: np.ndarray | None = None
    ) -> EncodedSnapshot:
        """The message fields for ``client`` this tick (shared with clients of the same key).

        ``visible`` is a bool mask over the current snapshot's rows (None: all rows). Records
        the send in ``client`` so a later ack of this id can serve as a base.
        """
        current = self._current
        if current is None:
            raise InvalidState("encode_for() before begin_tick()")
        if visible is not None:
            visible = np.asarray(visible, dtype=bool)
            if visible.shape != (len(current),):
                raise InvalidState(f"visibility mask shape {visible.shape} != ({len(current)},)")
        base = self.history.get(client.acked_id)
        base_visible = client.visibility_of(base.id) if base is not None else None
        key = (base.id if base is not None else None, _mask_key(base_visible), _mask_key(visible))
        encoded = self._cache.get(key)
        if encoded is None:
            base_view = base.select(base_visible) if base is not None else None
            payload, compressed = encode_payload(
                self.schema,
                current.select(visible),
                base_view,
                checksum=self.checksum,
                compress=self.compress,
            )
            encoded = EncodedSnapshot(current.id, current.tick, key[0], compressed, payload)
            self._cache[key] = encoded
            self.encodes += 1
        client.record_sent(current.id, visible)
        return encoded
