"""TickPacer: inputs produced just before the server tick that applies them, from any phase."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.client.pacing import (
    DEFAULT_LEAD_MS,
    HIT_DECAY_MS,
    MISS_STEP_MS,
    PHASE_BLOCK,
    PROBE_DECAY_MS,
    SHIFT_SNAPSHOTS,
    TickPacer,
)

PERIOD_MS = 1000.0 / 30


def simulate(
    start_ms: float, frame_offset_ms: float, fps: float, snap_delay_ms: float, one_way_ms: float
) -> tuple[TickPacer, list[float], int, int]:
    """A server ticking at 30 Hz from ``start_ms``, a client framing at ``fps`` for 25 s.

    Returns the pacer, each input's latency (production -> arrival of the snapshot of the tick
    that applied it) from 5 s after the server's start, how many inputs the server had to queue a
    tick, and the misses after those 5 s of warm-up.
    """
    pacer = TickPacer(30)
    frame_ms = 1000.0 / fps
    inflight: list[tuple[float, int, int]] = []  # (acking snapshot arrival, tick, target)
    latencies: list[float] = []
    applied_ticks: list[int] = []
    now = frame_offset_ms
    next_snapshot = 0
    warm_misses: int | None = None
    warm_ms = max(start_ms, 0.0) + 5_000
    while now < 25_000:
        if warm_misses is None and now > warm_ms:
            warm_misses = pacer.misses
        # Snapshots that arrived by now: tick k arrives at start + k P + delay + one way.
        while start_ms + next_snapshot * PERIOD_MS + snap_delay_ms + one_way_ms <= now:
            arrival = start_ms + next_snapshot * PERIOD_MS + snap_delay_ms + one_way_ms
            if next_snapshot >= 0 and arrival >= 0:
                pacer.observe_snapshot(arrival, next_snapshot)
            for item in [i for i in inflight if i[1] <= next_snapshot]:
                inflight.remove(item)
                pacer.observe_applied(item[2], next_snapshot)
            next_snapshot += 1
        for _ in range(pacer.steps_due(now)):
            target = pacer.take_target()
            assert target is not None
            reaches = now + one_way_ms
            tick = math.ceil((reaches - start_ms) / PERIOD_MS)  # the first tick after arrival
            inflight.append((0.0, tick, target))
            if now > warm_ms:
                applied_ticks.append(tick)
                acked_at = start_ms + tick * PERIOD_MS + snap_delay_ms + one_way_ms
                latencies.append(acked_at - now)
        now += frame_ms
    doubled = len(applied_ticks) - len(set(applied_ticks))
    return pacer, latencies, doubled, pacer.misses - (warm_misses or 0)


@settings(max_examples=40, deadline=None)
@given(
    start_ms=st.floats(-5_000, 5_000),
    frame_offset_ms=st.floats(0, 17),
    fps=st.sampled_from([30.0, 60.0, 144.0]),
    snap_delay_ms=st.floats(0.2, 8.0),
    one_way_ms=st.floats(0.05, 20.0),
)
def test_inputs_are_acknowledged_within_one_tick_plus_lead_from_any_phase(
    start_ms: float, frame_offset_ms: float, fps: float, snap_delay_ms: float, one_way_ms: float
) -> None:
    _, latencies, doubled, misses = simulate(
        start_ms, frame_offset_ms, fps, snap_delay_ms, one_way_ms
    )
    assert len(latencies) > 400  # one input per tick (30 Hz) over at least 15 s
    latencies.sort()
    p99 = latencies[int(0.99 * len(latencies))]
    # Production -> acknowledging snapshot is the unavoidable part (server delay, both network
    # legs, the frame the input waited for) plus the lead's slack: no queueing for a tick.
    frame_ms = 1000.0 / fps
    assert p99 <= snap_delay_ms + 2 * one_way_ms + frame_ms + DEFAULT_LEAD_MS
    assert misses <= 2 + len(latencies) // 100
    assert doubled <= 3  # the server rarely gets two inputs in one tick


def test_nothing_is_due_before_the_first_snapshot_then_one_per_tick() -> None:
    pacer = TickPacer(30)
    assert not pacer.synced and pacer.steps_due(1_000.0) == 0
    pacer.observe_snapshot(1_000.0, 30)  # tick 30 arrived at t = 1000 ms: phase 0
    assert pacer.synced and abs(pacer.phase_ms) < 1e-9
    first_deadline = 31 * PERIOD_MS - DEFAULT_LEAD_MS
    assert pacer.steps_due(first_deadline - 0.5) == 0
    assert pacer.steps_due(first_deadline + 0.5) == 1 and pacer.take_target() == 31
    assert pacer.steps_due(first_deadline + 1.0) == 0  # already produced for tick 31
    assert pacer.steps_due(first_deadline + PERIOD_MS) == 1 and pacer.take_target() == 32


def test_a_stall_skips_targets_instead_of_bursting() -> None:
    pacer = TickPacer(30, max_steps=3)
    pacer.observe_snapshot(0.0, 0)
    pacer.steps_due(0.0)
    assert pacer.steps_due(10 * PERIOD_MS) == 3
    assert pacer.skipped > 0
    assert [pacer.take_target() for _ in range(3)][-1] == math.floor(
        (10 * PERIOD_MS + DEFAULT_LEAD_MS) / PERIOD_MS
    )


def _settled(pacer: TickPacer) -> TickPacer:
    """``pacer`` after a first block of snapshots (ticks 0 .. PHASE_BLOCK - 1, phase 0)."""
    for tick in range(PHASE_BLOCK):
        pacer.observe_snapshot(tick * PERIOD_MS, tick)
    return pacer


def _miss(pacer: TickPacer, target: int, late_by: int = 1) -> None:
    """Snapshots of ``target`` .. ``target + late_by`` arrive (50 ms after their ticks, so the
    phase estimate stays put); only the last acknowledges the input aimed at ``target``."""
    for tick in range(target, target + late_by + 1):
        pacer.observe_snapshot(tick * PERIOD_MS + 50.0, tick)
    pacer.observe_applied(target, target + late_by)


def test_misses_lengthen_the_lead_and_hits_shorten_it_slowly() -> None:
    pacer = TickPacer(30, lead_ms=5.0)
    _miss(pacer, 10)
    assert pacer.lead_ms == 5.0 + MISS_STEP_MS and pacer.misses == 1
    longer = pacer.lead_ms
    for tick in range(100):
        pacer.observe_applied(tick, tick)
    assert 5.0 < pacer.lead_ms < longer and pacer.hits == 100
    assert math.isclose(pacer.lead_ms, longer - 100 * HIT_DECAY_MS)


def test_a_fresh_pacer_walks_its_lead_down_fast_until_the_first_miss() -> None:
    pacer = TickPacer(30)
    for tick in range(40):  # ~1.3 s of hits
        pacer.observe_applied(tick, tick)
    assert math.isclose(pacer.lead_ms, DEFAULT_LEAD_MS - 40 * PROBE_DECAY_MS)
    _miss(pacer, 40)
    probed = pacer.lead_ms
    for tick in range(41, 81):
        pacer.observe_applied(tick, tick)
    assert math.isclose(pacer.lead_ms, probed - 40 * HIT_DECAY_MS)  # then slowly


def test_a_late_ack_without_the_snapshots_in_between_is_not_a_miss() -> None:
    pacer = TickPacer(30, lead_ms=5.0)
    pacer.observe_snapshot(9 * PERIOD_MS + 50.0, 9)
    # The server caught up on ticks 10-12 after a stall and sent only 12's snapshot.
    pacer.observe_snapshot(12 * PERIOD_MS + 50.0, 12)
    pacer.observe_applied(10, 12)
    assert pacer.misses == 0 and pacer.unjudged == 1 and pacer.lead_ms == 5.0
    _miss(pacer, 13, late_by=2)  # 13 and 14 arrived without it: a miss
    assert pacer.misses == 1 and pacer.lead_ms == 5.0 + MISS_STEP_MS


def test_misses_after_a_stalled_frame_loop_do_not_lengthen_the_lead() -> None:
    pacer = TickPacer(30, lead_ms=5.0)
    pacer.observe_snapshot(0.0, 0)
    now = 0.0
    while pacer.steps_due(now) == 0:
        now += 1.0
    pacer.take_target()
    now += 5 * PERIOD_MS  # the frame loop stalled for five periods
    produced = [pacer.take_target() for _ in range(pacer.steps_due(now))]
    assert produced and None not in produced
    for target in produced:
        assert target is not None
        _miss(pacer, target)
    assert pacer.misses == len(produced) == pacer.late_misses
    assert pacer.lead_ms == 5.0


def test_a_growing_lead_skips_targets_instead_of_sending_more_than_one_input_a_tick() -> None:
    pacer = TickPacer(30)
    pacer.observe_snapshot(0.0, 0)
    frame_ms = 1000.0 / 144
    produced = 0
    now = 0.0
    while now < 3_000.0:
        for _ in range(pacer.steps_due(now)):
            target = pacer.take_target()
            assert target is not None
            produced += 1
            _miss(pacer, target)  # every input misses: the lead climbs
        now += frame_ms
    assert pacer.lead_ms > 100.0  # it did climb by whole periods...
    assert produced <= 3 * 30 + pacer.max_steps  # ...without crowding extra inputs in
    assert pacer.skipped > 0


def test_misses_of_inputs_already_in_flight_raise_the_lead_once() -> None:
    pacer = _settled(TickPacer(30, lead_ms=10.0))
    now = PHASE_BLOCK * PERIOD_MS
    while pacer.steps_due(now) == 0:
        now += 1.0
    targets = []
    for _ in range(5):  # five inputs produced with the old lead
        targets.append(pacer.take_target())
        now += PERIOD_MS
        pacer.steps_due(now)
    for target in targets:
        assert target is not None
        _miss(pacer, target)
    assert pacer.misses == 5 and pacer.late_misses == 0
    assert pacer.lead_ms == 10.0 + MISS_STEP_MS


def test_misses_while_the_phase_estimate_settles_do_not_lengthen_the_lead() -> None:
    pacer = TickPacer(30, lead_ms=10.0)
    pacer.observe_snapshot(0.0, 0)  # the first block of the phase minimum has just begun
    now = 0.0
    while pacer.steps_due(now) == 0:
        now += 1.0
    target = pacer.take_target()
    assert target is not None
    _miss(pacer, target)
    assert pacer.misses == pacer.late_misses == 1 and pacer.lead_ms == 10.0


def test_a_schedule_that_moved_later_is_taken_after_a_few_snapshots() -> None:
    pacer = _settled(TickPacer(30))
    assert abs(pacer.phase_ms) < 1e-9
    # The server skipped one slot after tick 29: tick k now arrives at (k + 1) periods.
    for i, tick in enumerate(range(PHASE_BLOCK, PHASE_BLOCK + SHIFT_SNAPSHOTS)):
        pacer.observe_snapshot((tick + 1) * PERIOD_MS, tick)
        moved = i == SHIFT_SNAPSHOTS - 1
        assert math.isclose(pacer.phase_ms, PERIOD_MS if moved else 0.0, abs_tol=1e-9)
    assert pacer.shifts == 1


def test_a_catch_up_burst_does_not_move_the_schedule() -> None:
    pacer = _settled(TickPacer(30))
    # A 130 ms stall, then ticks 30-33 back to back, then on time again.
    for tick in range(PHASE_BLOCK, PHASE_BLOCK + 4):
        pacer.observe_snapshot(33 * PERIOD_MS + 5.0, tick)
    for tick in range(PHASE_BLOCK + 4, PHASE_BLOCK + 10):
        pacer.observe_snapshot(tick * PERIOD_MS + 1.0, tick)
    assert pacer.shifts == 0 and abs(pacer.phase_ms) < 1e-9
