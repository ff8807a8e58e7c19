"""Prometheus metrics of one server, exposed on ``GET /metrics`` of the HTTP side port.

Each :class:`ServerMetrics` owns its own ``CollectorRegistry`` (never the process-global one),
so several servers -- e.g. in one test process -- never collide on metric names.

Goals: nothing on the per-message or per-snapshot path touches prometheus-client. Counters are
plain ``int`` attributes (``metrics.bytes_sent += n``, ~30 ns) and per-label dicts; a
custom collector turns them into metric families at scrape time, under the same names as
before (``astranet_bytes_sent_total``...). Gauges and the two histograms stay prometheus
objects: they are set once per tick or once a second, not per message.
Limits: label values are bounded so a client can never grow the registry without bound:
message types outside :data:`KNOWN_MESSAGE_TYPES` are counted as ``"unknown"``, and kick reasons
and system names are capped at :data:`MAX_LABEL_VALUES` distinct values each (the rest are
``"other"``). Benchmark: the edge's per-message path in benchmarks/protocol.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE_LATEST",
    "KNOWN_MESSAGE_TYPES",
    "MAX_LABEL_VALUES",
    "SYSTEM_TIME_BUCKETS_S",
    "TICK_DURATION_BUCKETS_S",
    "ServerMetrics",
]

NAMESPACE = "astranet"
# Client -> server message types of WIRE.md (and docs/protocol.md's Command); anything else a
# client sends is "unknown".
KNOWN_MESSAGE_TYPES: frozenset[str] = frozenset(
    {"Hello", "FindOrCreate", "JoinRoom", "Resume", "InputFrame", "Ack", "Ping", "Leave"}
    | {"Command"}
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


#: (name, help) of every unlabelled counter: attribute ``metrics.NAME``, exported as NAME_total.
_COUNTERS: tuple[tuple[str, str], ...] = (
    ("late_ticks", "Ticks started over half a period late"),
    ("skipped_ticks", "Tick slots skipped by the catch-up rule"),
    ("bytes_sent", "WebSocket payload bytes sent"),
    ("bytes_received", "WebSocket payload bytes received"),
    ("snapshot_bytes", "Snapshot payload bytes sent"),
    (
        "snapshot_encodes",
        "Snapshot payloads encoded (one per distinct base and view per room tick)",
    ),
    (
        "snapshot_deliveries",
        "Snapshots handed to clients by the fan-out (one per client per room tick)",
    ),
    ("rate_limited_messages", "Messages dropped by the rate limiter"),
    ("undecodable_inputs", "Correctly signed input blobs the game could not decode"),
    (
        "snapshots_skipped",
        "Snapshots replaced by a newer one before a slow client's socket took them",
    ),
    ("input_violations", "Inputs refused by the game's movement-sanity check"),
    ("inputs_dropped", "Inputs dropped because a player's input queue was full"),
    ("malformed_messages", "Messages rejected as malformed or of unknown type"),
    (
        "rewind_clamps",
        "Lag-compensation views clamped to the rewind window or to the newest snapshot",
    ),
    (
        "event_resyncs",
        "Event outboxes resynchronised (a player too far behind: waiting events dropped)",
    ),
    ("commands_refused", "Commands refused by the game, the per-seat rate limit or as replays"),
)


class ServerMetrics:
    """Every metric one server exports, on a private registry.

    Counters are plain ints: add to them directly (``metrics.bytes_sent += n``).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.late_ticks = 0
        self.skipped_ticks = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.snapshot_bytes = 0
        self.snapshot_encodes = 0
        self.snapshot_deliveries = 0
        self.rate_limited_messages = 0
        self.undecodable_inputs = 0
        self.snapshots_skipped = 0
        self.input_violations = 0
        self.inputs_dropped = 0
        self.malformed_messages = 0
        self.rewind_clamps = 0
        self.event_resyncs = 0
        self.commands_refused = 0
        #: Client messages by wire type (only KNOWN_MESSAGE_TYPES and "unknown" as keys).
        self.messages_received: dict[str, int] = {}
        #: Server-side closes by reason label (bounded by _BoundedLabels).
        self.kicks: dict[str, int] = {}
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
        self.storage = Gauge(
            "storage",
            "Storage writer: cumulative counts (checkpoints_written, writes_failed, ...) "
            "and the current queue depth (pending_jobs)",
            ["stat"],
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
        #: Called at the start of every scrape: owners of per-room counters (RoomHost) move
        #: them into the plain ints here then, instead of after every room tick.
        self.before_collect: Callable[[], None] | None = None
        self._kick_reasons = _BoundedLabels()
        self._system_names = _BoundedLabels()
        reg.register(_CounterCollector(self))

    # --- recording helpers (bounded labels live here, so callers cannot bypass them) -------

    def observe_tick(self, tick: int, duration_s: float, lateness_s: float, late: bool) -> None:
        """``TickLoop(on_tick=metrics.observe_tick)``: one tick's duration and lateness."""
        self.tick_duration_seconds.observe(duration_s)
        if late:
            self.late_ticks += 1

    def record_skipped(self, count: int) -> None:
        """``TickLoop(on_skip=metrics.record_skipped)``."""
        self.skipped_ticks += count

    def count_message(self, message_type: str) -> None:
        """One received client message; unknown ``t`` values share the ``unknown`` label."""
        label = message_type if message_type in KNOWN_MESSAGE_TYPES else "unknown"
        counts = self.messages_received
        counts[label] = counts.get(label, 0) + 1

    def count_kick(self, reason: str) -> None:
        """One connection closed for ``reason`` (use the wire error code, e.g. ``replay``)."""
        label = self._kick_reasons.admit(reason)
        self.kicks[label] = self.kicks.get(label, 0) + 1

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


class _CounterCollector(Collector):
    """Exports the plain-int counters of one ServerMetrics at scrape time."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[CounterMetricFamily]:
        metrics = self._metrics
        if metrics.before_collect is not None:
            metrics.before_collect()
        for name, documentation in _COUNTERS:
            yield CounterMetricFamily(
                f"{NAMESPACE}_{name}", documentation, value=getattr(metrics, name)
            )
        by_type = CounterMetricFamily(
            f"{NAMESPACE}_messages_received", "Client messages by type", labels=["type"]
        )
        for label, value in sorted(metrics.messages_received.items()):
            by_type.add_metric([label], value)
        yield by_type
        kicks = CounterMetricFamily(
            f"{NAMESPACE}_kicks",
            "Connections closed by the server for misbehaviour",
            labels=["reason"],
        )
        for label, value in sorted(metrics.kicks.items()):
            kicks.add_metric([label], value)
        yield kicks
