"""Cluster mode on Redis (WIRE.md A2): many server processes, one room directory.

* :mod:`astranet.cluster.directory` -- :class:`RoomDirectory`, the seats and rooms of every
  node in Redis, each operation one atomic Lua script (:mod:`astranet.cluster.scripts`);
* :mod:`astranet.cluster.leases` -- :class:`NodeLease`, heartbeat, re-registration, reaping;
* :mod:`astranet.cluster.timings` -- :class:`ClusterTimings`, the lease arithmetic.

Keys and deployment: ``docs/cluster.md``.
"""

from astranet.cluster.directory import (
    DEFAULT_NAMESPACE,
    HeartbeatReply,
    Placement,
    RoomDirectory,
    RoomLocation,
)
from astranet.cluster.leases import HostedRoom, NodeLease
from astranet.cluster.timings import ClusterTimings

__all__ = [
    "DEFAULT_NAMESPACE",
    "ClusterTimings",
    "HeartbeatReply",
    "HostedRoom",
    "NodeLease",
    "Placement",
    "RoomDirectory",
    "RoomLocation",
]
