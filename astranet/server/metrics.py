"""Prometheus metrics of one server, exposed on ``GET /metrics`` of the HTTP side port.

Each :class:`ServerMetrics` owns its own ``CollectorRegistry`` (never the process-global one),
so several servers -- e.g. in one test process -- never collide on metric names.

Goals: one attribute per metric with a self-explaining name; recording is a method call the
other layers make (``observe_tick`` plugs straight into ``TickLoop(on_tick=...)``).
Limits: label values are bounded so a client can never grow the registry without bound:
message types outside :data:`KNOWN_MESSAGE_TYPES` are counted as ``"unknown"``, and kick reasons
and system names are capped at :data:`MAX_LABEL_VALUES` distinct values each (the rest are
``"other"``). Benchmark: none (prometheus-client counters are a lock and an add).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = [
    "CONTENT_TYPE_LATEST",
    "KNOWN_MESSAGE_TYPES",
    "MAX_LABEL_VALUES",
    "SYSTEM_TIME_BUCKETS_S",
    "TICK_DURATION_BUCKETS_S",
    "ServerMetrics",
]

NAMESPACE = "astranet"
# Client -> server message types of WIRE.md; anything else a client sends is "unknown".
KNOWN_MESSAGE_TYPES: frozenset[str] = frozenset(
    {"Hello", "FindOrCreate", "JoinRoom", "Resume", "InputFrame", "Ack", "Ping", "Leave"}
)
MAX_LABEL_VALUES = 32  # distinct kick reasons / system names per metric; plenty for real code
OTHER_LABEL = "other"
# Resolution around the 33 ms budget of a 30 Hz tick, with headroom to see overruns.
TICK_DURATION_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.025,
    0.03,
    0.033,
    0.04,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
)
# One system is a fraction of a tick.
SYSTEM_TIME_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.033, 0.1)


class _BoundedLabels:
    """Admits at most ``limit`` distinct label values; later newcomers map to ``other``."""

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def admit(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) < self._limit:
            self._seen.add(value)
            return value
        return OTHER_LABEL


class ServerMetrics:
    """Every metric one server exports, on a private registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.connections = Gauge(
            "connections", "Open WebSocket connections", namespace=NAMESPACE, registry=reg
        )
        self.rooms = Gauge("rooms", "Live rooms", namespace=NAMESPACE, registry=reg)
        self.players = Gauge(
            "players", "Seated players in all rooms", namespace=NAMESPACE, registry=reg
        )
        self.tick_duration_seconds = Histogram(
            "tick_duration_seconds",
            "Wall time of one server tick (all rooms)",
            namespace=NAMESPACE,
            registry=reg,
            buckets=TICK_DURATION_BUCKETS_S,
        )
        self.late_ticks = Counter(
            "late_ticks", "Ticks started over half a period late", namespace=NAMESPACE, registry=reg
        )
        self.skipped_ticks = Counter(
            "skipped_ticks",
            "Tick slots skipped by the catch-up rule",
            namespace=NAMESPACE,
            registry=reg,
        )
        self.bytes_sent = Counter(
            "bytes_sent", "WebSocket payload bytes sent", namespace=NAMESPACE, registry=reg
        )
        self.bytes_received = Counter(
            "bytes_received", "WebSocket payload bytes received", namespace=NAMESPACE, registry=reg
        )
        self.snapshot_bytes = Counter(
            "snapshot_bytes", "Snapshot payload bytes sent", namespace=NAMESPACE, registry=reg
        )
        self.messages_received = Counter(
            "messages_received",
            "Client messages by type",
            ["type"],
            namespace=NAMESPACE,
            registry=reg,
        )
        self._message_counters: dict[str, Any] = {}
        self.kicks = Counter(
            "kicks",
            "Connections closed by the server for misbehaviour",
            ["reason"],
            namespace=NAMESPACE,
            registry=reg,
        )
        self.rate_limited_messages = Counter(
            "rate_limited_messages",
            "Messages dropped by the rate limiter",
            namespace=NAMESPACE,
            registry=reg,
        )
        self.undecodable_inputs = Counter(
            "undecodable_inputs",
            "Correctly signed input blobs the game could not decode",
            namespace=NAMESPACE,
            registry=reg,
        )
        self.snapshots_skipped = Counter(
            "snapshots_skipped",
            "Snapshots replaced by a newer one before a slow client's socket took them",
            namespace=NAMESPACE,
            registry=reg,
        )
        self.storage = Gauge(
            "storage",
            "Storage writer: cumulative counts (checkpoints_written, writes_failed, ...) "
            "and the current queue depth (pending_jobs)",
            ["stat"],
            namespace=NAMESPACE,
            registry=reg,
        )
        self.input_violations = Counter(
            "input_violations",
            "Inputs refused by the game's movement-sanity check",
            namespace=NAMESPACE,
            registry=reg,
        )
        self.inputs_dropped = Counter(
            "inputs_dropped",
            "Inputs dropped because a player's input queue was full",
            namespace=NAMESPACE,
            registry=reg,
        )
        self.malformed_messages = Counter(
            "malformed_messages",
            "Messages rejected as malformed or of unknown type",
            namespace=NAMESPACE,
            registry=reg,
        )
        self.system_seconds = Histogram(
            "system_seconds",
            "Wall time of one ECS system in one room tick",
            ["system"],
            namespace=NAMESPACE,
            registry=reg,
            buckets=SYSTEM_TIME_BUCKETS_S,
        )
        self._kick_reasons = _BoundedLabels()
        self._system_names = _BoundedLabels()

    # --- recording helpers (bounded labels live here, so callers cannot bypass them) -------

    def observe_tick(self, tick: int, duration_s: float, lateness_s: float, late: bool) -> None:
        """``TickLoop(on_tick=metrics.observe_tick)``: one tick's duration and lateness."""
        self.tick_duration_seconds.observe(duration_s)
        if late:
            self.late_ticks.inc()

    def record_skipped(self, count: int) -> None:
        """``TickLoop(on_skip=metrics.record_skipped)``."""
        self.skipped_ticks.inc(count)

    def count_message(self, message_type: str) -> None:
        """One received client message; unknown ``t`` values share the ``unknown`` label."""
        counter = self._message_counters.get(message_type)
        if counter is None:
            # labels() costs a lock and a dict lookup per call; it showed up at 2-7 % of the
            # server's CPU under load, so each type's child counter is looked up once.
            label = message_type if message_type in KNOWN_MESSAGE_TYPES else "unknown"
            counter = self.messages_received.labels(type=label)
            if message_type in KNOWN_MESSAGE_TYPES:
                self._message_counters[message_type] = counter
        counter.inc()

    def count_kick(self, reason: str) -> None:
        """One connection closed for ``reason`` (use the wire error code, e.g. ``replay``)."""
        self.kicks.labels(reason=self._kick_reasons.admit(reason)).inc()

    def observe_systems(self, times_s: Iterable[tuple[str, float]]) -> None:
        """Per-system seconds of one room step, e.g. from a timed esper process."""
        for name, seconds in times_s:
            self.system_seconds.labels(system=self._system_names.admit(name)).observe(seconds)

    def set_occupancy(self, *, connections: int, rooms: int, players: int) -> None:
        """Set the three gauges at once (cheap enough to call every tick)."""
        self.connections.set(connections)
        self.rooms.set(rooms)
        self.players.set(players)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry (serve as CONTENT_TYPE_LATEST)."""
        return generate_latest(self.registry)
