"""Tests of astranet.server.metrics: private registries, recording helpers, bounded labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from astranet.examples.dots import Dots
from astranet.replication.events import MAX_OUTBOX_EVENTS
from astranet.server.metrics import MAX_LABEL_VALUES, ServerMetrics
from astranet.server.room import Room


def samples(metrics: ServerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse our own exposition text the way a Prometheus scraper would."""
    parsed = text_string_to_metric_families(metrics.render().decode())
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in parsed
        for sample in family.samples
    }


def test_two_servers_in_one_process_do_not_collide() -> None:
    first, second = ServerMetrics(), ServerMetrics()
    first.connections.set(3)
    second.connections.set(7)
    assert samples(first)[("astranet_connections", ())] == 3
    assert samples(second)[("astranet_connections", ())] == 7


def test_exposition_names_every_metric() -> None:
    text = ServerMetrics().render().decode()
    for name in (
        "astranet_connections", "astranet_rooms", "astranet_players",
        "astranet_tick_duration_seconds_bucket", "astranet_late_ticks_total",
        "astranet_skipped_ticks_total", "astranet_bytes_sent_total",
        "astranet_bytes_received_total", "astranet_snapshot_bytes_total",
        "astranet_rate_limited_messages_total", "astranet_undecodable_inputs_total",
        "astranet_malformed_messages_total",
        # Labelled families appear in HELP/TYPE lines before any sample exists.
        "astranet_messages_received_total", "astranet_kicks_total", "astranet_system_seconds",
    ):  # fmt: skip
        assert name in text


def test_tick_callbacks_feed_histogram_and_counters() -> None:
    metrics = ServerMetrics()
    metrics.observe_tick(0, 0.004, 0.0, False)
    metrics.observe_tick(1, 0.040, 0.02, True)
    metrics.record_skipped(5)
    got = samples(metrics)
    assert got[("astranet_tick_duration_seconds_count", ())] == 2
    assert got[("astranet_tick_duration_seconds_bucket", (("le", "0.005"),))] == 1
    assert got[("astranet_tick_duration_seconds_bucket", (("le", "0.033"),))] == 1
    assert got[("astranet_tick_duration_seconds_bucket", (("le", "0.05"),))] == 2
    assert got[("astranet_late_ticks_total", ())] == 1
    assert got[("astranet_skipped_ticks_total", ())] == 5


def test_message_types_from_clients_are_bounded_to_the_wire_set() -> None:
    metrics = ServerMetrics()
    metrics.count_message("InputFrame")
    metrics.count_message("InputFrame")
    for index in range(100):
        metrics.count_message(f"Evil{index}")
    got = samples(metrics)
    assert got[("astranet_messages_received_total", (("type", "InputFrame"),))] == 2
    assert got[("astranet_messages_received_total", (("type", "unknown"),))] == 100
    assert len([key for key in got if key[0] == "astranet_messages_received_total"]) == 2


def test_kick_reasons_and_system_names_are_capped() -> None:
    metrics = ServerMetrics()
    for index in range(MAX_LABEL_VALUES + 10):
        metrics.count_kick(f"reason{index}")
    metrics.count_kick("reason0")
    metrics.observe_systems([("MovementSystem", 0.001), ("SnapshotSystem", 0.002)])
    got = samples(metrics)
    kicks = {key[1][0][1]: value for key, value in got.items() if key[0] == "astranet_kicks_total"}
    assert len(kicks) == MAX_LABEL_VALUES + 1
    assert kicks["other"] == 10 and kicks["reason0"] == 2
    assert got[("astranet_system_seconds_count", (("system", "MovementSystem"),))] == 1
    assert got[("astranet_system_seconds_sum", (("system", "SnapshotSystem"),))] == 0.002


def test_occupancy_gauges_and_byte_counters() -> None:
    metrics = ServerMetrics()
    metrics.set_occupancy(connections=5, rooms=2, players=4)
    metrics.bytes_sent += 100
    metrics.snapshot_bytes += 60
    got = samples(metrics)
    assert got[("astranet_connections", ())] == 5
    assert got[("astranet_rooms", ())] == 2
    assert got[("astranet_players", ())] == 4
    assert got[("astranet_bytes_sent_total", ())] == 100
    assert got[("astranet_snapshot_bytes_total", ())] == 60


async def test_tick_loop_callbacks_plug_into_metrics() -> None:
    from astranet.server.scheduler import TickLoop

    metrics = ServerMetrics()
    now = [0.0]
    loop: TickLoop

    def step(tick: int) -> None:
        now[0] += 0.5  # far over a 30 Hz period: every later burst skips
        if tick == 2:
            loop.stop()

    loop = TickLoop(
        30,
        step,
        clock=lambda: now[0],
        on_tick=metrics.observe_tick,
        on_skip=metrics.record_skipped,
    )
    await loop.run()
    got = samples(metrics)
    assert got[("astranet_tick_duration_seconds_count", ())] == 3
    assert got[("astranet_skipped_ticks_total", ())] == loop.stats.skipped_ticks == 28


def test_rewind_clamps_event_resyncs_and_refused_commands_reach_the_counters() -> None:
    room = Room("COUNTS", "us-east", "dots", Dots())
    stay, leave = room.add_player("p0", b"h"), room.add_player("p1", b"h")
    for tick in range(3):
        room.step(tick)
    room.sim.rewinder.rewind(-1000.0)  # long before the window: clamped
    room.sim.rewinder.rewind(None)  # the newest: not clamped
    for _ in range(MAX_OUTBOX_EVENTS + 1):  # nobody acks: both outboxes resync once
        room.events.emit("game.tick", b"x")
    stay.commands.push(1, "chat", b"hi")  # Dots takes no commands: refused in the tick
    room.step(3)
    room.remove_player(leave.player_id)  # its resync still counts after it left
    assert room.drain_event_counts() == (1, 2, 1)
    assert room.drain_event_counts() == (0, 0, 0)  # only what is new since the last call

    metrics = ServerMetrics()
    metrics.rewind_clamps, metrics.event_resyncs, metrics.commands_refused = 1, 2, 3
    got = samples(metrics)
    assert got[("astranet_rewind_clamps_total", ())] == 1
    assert got[("astranet_event_resyncs_total", ())] == 2
    assert got[("astranet_commands_refused_total", ())] == 3
