"""astranet.replication: snapshots, the delta payload codec, fan-out and the client replica.

Server, per room tick: ``snap = history.capture(tick)``, ``fanout.begin_tick(snap)``, then
``fanout.encode_for(client_baseline, visible)`` per client; ``client_baseline.ack(id)`` on Ack.
Client: ``replica.apply(id, base_id, payload, compressed, server_tick)`` then Ack ``id``;
remote entities are sampled at render time from a ``SnapshotBuffer`` (interpolation).
Payload bytes: docs/protocol.md ("Snapshot payload"). Overview: docs/replication.md.
"""

from astranet.replication.codec import (
    FORMAT_VERSION,
    MAX_DECODED_BYTES,
    DesyncError,
    compress_payload,
    decode_delta,
    decode_payload,
    decompress_payload,
    encode_delta,
    encode_payload,
)
from astranet.replication.fanout import ClientBaseline, EncodedSnapshot, SnapshotFanout
from astranet.replication.interpolation import (
    InterpolationDelay,
    InterpolationResult,
    InterpolationStatus,
    InvalidSnapshotError,
    SnapshotBuffer,
)
from astranet.replication.replica import Replica, ReplicaUpdate
from astranet.replication.snapshot import (
    DEFAULT_RING,
    Snapshot,
    SnapshotHistory,
    capture,
    empty_snapshot,
)

__all__ = [
    "DEFAULT_RING",
    "FORMAT_VERSION",
    "MAX_DECODED_BYTES",
    "ClientBaseline",
    "DesyncError",
    "EncodedSnapshot",
    "InterpolationDelay",
    "InterpolationResult",
    "InterpolationStatus",
    "InvalidSnapshotError",
    "Replica",
    "ReplicaUpdate",
    "Snapshot",
    "SnapshotBuffer",
    "SnapshotFanout",
    "SnapshotHistory",
    "capture",
    "compress_payload",
    "decode_delta",
    "decode_payload",
    "decompress_payload",
    "empty_snapshot",
    "encode_delta",
    "encode_payload",
]
