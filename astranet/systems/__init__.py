"""astranet.systems: the esper processors a game adds to its world, and their order.

Server: :class:`InputIngestionSystem` (Stage.INPUT), the game's systems (Stage.SIMULATE),
:class:`SnapshotReplicationSystem` (Stage.REPLICATE).
Client: :class:`ClockSyncSystem` and :class:`SnapshotReceiveSystem` (Stage.RECEIVE),
:class:`ReconciliationSystem` (Stage.RECONCILE), :class:`PredictionSystem` (Stage.PREDICT),
:class:`InterpolationSystem` (Stage.INTERPOLATE); see docs/client.md.
Order lives in :mod:`.stages`; the types they share live in :mod:`.contract`.
"""

from astranet.systems.clock_sync import ClockSyncSystem
from astranet.systems.contract import (
    AppliedSnapshot,
    ClientFrame,
    ClientLink,
    ClockEstimate,
    LocalPlayer,
    ReceivedSnapshot,
)
from astranet.systems.input_ingestion import (
    MAX_INPUT_CREDIT,
    MAX_QUEUED_INPUTS,
    IngestionStats,
    InputIngestionSystem,
    InputQueue,
)
from astranet.systems.interpolation import InterpolationStats, InterpolationSystem, RenderView
from astranet.systems.prediction import PredictionSystem
from astranet.systems.reconciliation import (
    ReconciliationStats,
    ReconciliationSystem,
    SnapshotReceiveSystem,
)
from astranet.systems.snapshot_replication import SnapshotReplicationSystem, SnapshotSubscriber
from astranet.systems.stages import Stage, add_system, priority_of

__all__ = [
    "MAX_INPUT_CREDIT",
    "MAX_QUEUED_INPUTS",
    "AppliedSnapshot",
    "ClientFrame",
    "ClientLink",
    "ClockEstimate",
    "ClockSyncSystem",
    "IngestionStats",
    "InputIngestionSystem",
    "InputQueue",
    "InterpolationStats",
    "InterpolationSystem",
    "LocalPlayer",
    "PredictionSystem",
    "ReceivedSnapshot",
    "ReconciliationStats",
    "ReconciliationSystem",
    "RenderView",
    "SnapshotReceiveSystem",
    "SnapshotReplicationSystem",
    "SnapshotSubscriber",
    "Stage",
    "add_system",
    "priority_of",
]
