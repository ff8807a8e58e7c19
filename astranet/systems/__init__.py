"""astranet.systems: the esper processors a game adds to its world, and their order.

Server: :class:`InputIngestionSystem` (Stage.INPUT), the game's systems (Stage.SIMULATE),
:class:`SnapshotReplicationSystem` (Stage.REPLICATE). Order lives in :mod:`.stages`.
"""

from astranet.systems.input_ingestion import (
    MAX_INPUT_CREDIT,
    MAX_QUEUED_INPUTS,
    IngestionStats,
    InputIngestionSystem,
    InputQueue,
)
from astranet.systems.snapshot_replication import SnapshotReplicationSystem, SnapshotSubscriber
from astranet.systems.stages import Stage, add_system, priority_of

__all__ = [
    "MAX_INPUT_CREDIT",
    "MAX_QUEUED_INPUTS",
    "IngestionStats",
    "InputIngestionSystem",
    "InputQueue",
    "SnapshotReplicationSystem",
    "SnapshotSubscriber",
    "Stage",
    "add_system",
    "priority_of",
]
