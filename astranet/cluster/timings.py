"""How long the cluster waits before it believes a node is dead, and what follows from it.

A node renews its lease every ``heartbeat_s``; the lease lasts ``lease_s``, so a node that
stops (crash, kill -9, network cut) is dead ``lease_s`` after its last heartbeat at the
latest. From that moment every placement and every ``/rooms`` ignores its rooms (they check
the lease); a live node's reaper, every ``reap_s``, then deletes them, and each room entry also
expires by itself ``room_ttl_s`` after its last refresh (the backstop when no node is left to
reap). The worst cases below are the deadlines WIRE.md A2 states, checked by ``validate``.
"""

from __future__ import annotations

from dataclasses import dataclass

from astranet.errors import ConfigurationError

__all__ = ["DEAD_DEADLINE_S", "ROOMS_GONE_DEADLINE_S", "ClusterTimings"]

DEAD_DEADLINE_S = 10.0  # A2: declared dead within 10 s of its last heartbeat
ROOMS_GONE_DEADLINE_S = 15.0  # A2: its rooms gone from /rooms and matchmaking within 15 s


@dataclass(frozen=True, slots=True)
class ClusterTimings:
    """Lease and expiry periods in seconds. Tests shrink them; the defaults meet A2."""

    heartbeat_s: float = 2.0  # lease renewal period: 5 renewals per lease, 4 may be lost
    lease_s: float = 10.0
    reap_s: float = 2.0
    room_ttl_s: float = 15.0
    seat_s: float = 15.0  # A2: a redirected seat is held 15 s
    hold_s: float = 30.0  # rule 2: party seats are held 30 s
    redis_timeout_s: float = 1.0  # one Redis call; past it matchmaking answers `unavailable`

    def worst_dead_after_last_heartbeat_s(self) -> float:
        """The latest a stopped node is declared dead, counted from its last heartbeat."""
        return self.lease_s

    def worst_rooms_gone_after_stop_s(self) -> float:
        """The latest a stopped node's rooms leave /rooms and matchmaking, from the stop.

        The last heartbeat was at most ``heartbeat_s`` before the stop, but views filter by
        lease, so the rooms go when the lease does: ``lease_s`` after that heartbeat.
        """
        return self.lease_s

    def worst_rooms_deleted_after_stop_s(self) -> float:
        """The latest the entries are deleted from Redis: a reaper pass after the lease lapses
        (``lease_s + reap_s`` + one round trip), or their own TTL if no node is left."""
        return min(self.lease_s + self.reap_s + self.redis_timeout_s, self.room_ttl_s)

    def validate(self) -> ClusterTimings:
        """Raise ConfigurationError unless these timings keep A2's promises; returns self."""
        if min(self.heartbeat_s, self.lease_s, self.reap_s, self.room_ttl_s) <= 0:
            raise ConfigurationError("cluster timings must be positive")
        if self.heartbeat_s * 2 > self.lease_s:
            raise ConfigurationError(
                f"heartbeat {self.heartbeat_s} s must be at most half the lease {self.lease_s} s"
            )
        if self.room_ttl_s < self.lease_s:
            raise ConfigurationError("room TTL must outlive the lease (a live node's rooms stay)")
        return self

    def meets_deadlines(self) -> bool:
        """True when these timings keep the 10 s / 15 s deadlines of WIRE.md A2."""
        return (
            self.worst_dead_after_last_heartbeat_s() <= DEAD_DEADLINE_S
            and self.worst_rooms_gone_after_stop_s() <= ROOMS_GONE_DEADLINE_S
            and self.worst_rooms_deleted_after_stop_s() <= ROOMS_GONE_DEADLINE_S
        )
