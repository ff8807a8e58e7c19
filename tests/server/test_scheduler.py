"""Tests of astranet.server.scheduler: the pure TickClock rules and the asyncio TickLoop.

All rule tests use a fake clock and never sleep; one real-time test checks the loop's rate.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from astranet.errors import ConfigurationError, InvalidState
from astranet.server.scheduler import TickClock, TickLoop, TickPlan
from astranet.testing import FakeClock

# --- TickClock: pure rules ---------------------------------------------------------------


def test_schedule_is_absolute_start_plus_n_over_hz() -> None:
    clock = TickClock(30, start_time=500.0)
    assert clock.scheduled_time(0) == 500.0
    assert clock.scheduled_time(30) == 501.0
    assert clock.scheduled_time(10_000) == 500.0 + 10_000 / 30
    assert clock.period_s == 1 / 30


def test_drift_free_over_10000_ticks_with_jittery_wakeups() -> None:
    start = 12_345.678
    clock = TickClock(30, start_time=start)
    rng = random.Random(7)
    stepped: list[int] = []
    max_jitter_s = 0.015  # under half a 30 Hz period: every wake-up is on time
    for _ in range(10_000):
        woke_at = clock.next_deadline() + rng.uniform(0.0, max_jitter_s)
        plan = clock.due_ticks(woke_at)
        assert plan.skipped == 0 and len(plan.ticks) == 1
        assert not clock.is_late(plan.ticks[0], woke_at)
        stepped.extend(plan.ticks)
    assert stepped == list(range(10_000))
    # The jitter (~75 s summed) never accumulated: tick 10_000 is due exactly on schedule.
    assert clock.next_deadline() == start + 10_000 / 30
    assert abs(clock.next_deadline() - (start + 10_000 / 30)) < 1e-9


def test_late_means_more_than_half_a_period_after_schedule() -> None:
    clock = TickClock(4, start_time=0.0)  # period 0.25 s, half 0.125 s: exact in binary
    assert clock.scheduled_time(1) == 0.25
    assert clock.lateness(1, 0.375) == 0.125
    assert not clock.is_late(1, 0.375)  # exactly half a period: on time
    assert clock.is_late(1, 0.375 + 1e-9)
    assert not clock.is_late(1, 0.2)  # early is not late
    assert clock.lateness(1, 0.2) < 0


def test_nothing_is_due_before_the_deadline() -> None:
    clock = TickClock(10, start_time=100.0)
    assert clock.due_ticks(99.0) == TickPlan(range(0, 0))
    assert clock.due_ticks(100.0) == TickPlan(range(0, 1))
    assert clock.due_ticks(100.099) == TickPlan(range(1, 1))  # woke early: nothing
    assert clock.next_tick == 1


def test_catch_up_runs_missed_ticks_back_to_back_up_to_max() -> None:
    clock = TickClock(10, start_time=0.0, max_catch_up=3)
    assert list(clock.due_ticks(0.0).ticks) == [0]
    plan = clock.due_ticks(0.35)  # slots 1..3 passed: 2 behind
    assert list(plan.ticks) == [1, 2, 3] and plan.skipped == 0
    plan = clock.due_ticks(0.75)  # slots 4..7: exactly max_catch_up behind, still caught up
    assert list(plan.ticks) == [4, 5, 6, 7] and plan.skipped == 0
    assert clock.next_deadline() == 0.8


def test_skip_ahead_when_further_behind_than_max_catch_up() -> None:
    clock = TickClock(10, start_time=0.0, max_catch_up=3)
    clock.due_ticks(0.0)
    plan = clock.due_ticks(0.55)  # slots 1..5 passed: 4 behind the due one > 3
    assert plan == TickPlan(range(1, 2), skipped=4)
    assert clock.skipped_total == 4
    # Tick numbers stay contiguous; the epoch moved by the skipped slots.
    assert clock.scheduled_time(1) == 0.5
    assert clock.next_deadline() == 0.6
    assert list(clock.due_ticks(0.6).ticks) == [2]
    plan = clock.due_ticks(10.0)  # a long stall: slot 100, next_tick 3 sits at slot 7
    assert plan.skipped == 93 and list(plan.ticks) == [3]
    assert clock.skipped_total == 97
    assert clock.next_deadline() == (4 + 97) / 10


def test_zero_catch_up_always_skips_to_the_current_slot() -> None:
    clock = TickClock(10, start_time=0.0, max_catch_up=0)
    clock.due_ticks(0.0)
    assert clock.due_ticks(0.25) == TickPlan(range(1, 2), skipped=1)


@pytest.mark.parametrize("tick_hz", [0, 241, -5, 30.0, True])
def test_bad_tick_rate_is_a_configuration_error(tick_hz: object) -> None:
    with pytest.raises(ConfigurationError, match="tick_hz"):
        TickClock(tick_hz, 0.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        TickLoop(tick_hz, lambda tick: None)  # type: ignore[arg-type]


# --- TickLoop with a fake clock (the step advances time; nothing sleeps) -------------------


@pytest.mark.timeout(10)
async def test_loop_steps_contiguous_ticks_and_counts_late_ones() -> None:
    fake = FakeClock()
    seen: list[tuple[int, bool]] = []
    loop: TickLoop

    def step(tick: int) -> None:
        # Tick 0 overruns by 0.16 s at 10 Hz; every later tick takes exactly one period, so
        # every later tick starts 0.06 s (> half of 0.1 s) after its schedule.
        fake.now += 0.16 if tick == 0 else 0.1
        if tick == 19:
            loop.stop()

    loop = TickLoop(10, step, clock=fake, on_tick=lambda t, d, lat, late: seen.append((t, late)))
    await loop.run()
    assert [tick for tick, _ in seen] == list(range(20))
    assert [late for _, late in seen] == [False] + [True] * 19
    assert loop.stats.ticks_run == 20
    assert loop.stats.late_ticks == 19
    assert loop.stats.skipped_ticks == 0
    assert loop.stats.max_duration_s == pytest.approx(0.16)
    assert loop.stats.mean_duration_s == pytest.approx((0.16 + 19 * 0.1) / 20)
    assert not loop.running


@pytest.mark.timeout(10)
async def test_loop_skips_when_a_step_overruns_badly() -> None:
    fake = FakeClock()
    ticks: list[int] = []
    skips: list[int] = []
    loop: TickLoop

    def step(tick: int) -> None:
        ticks.append(tick)
        fake.now += 0.5  # 15 periods at 30 Hz: always beyond max_catch_up
        if tick == 5:
            loop.stop()

    loop = TickLoop(30, step, clock=fake, max_catch_up=3, on_skip=skips.append)
    await loop.run()
    assert ticks == [0, 1, 2, 3, 4, 5]
    assert skips == [14] * 5
    assert loop.stats.skipped_ticks == 70
    assert loop.stats.late_ticks == 0  # after a skip the tick runs in its own slot


@pytest.mark.timeout(10)
async def test_step_exception_propagates_and_loop_can_restart() -> None:
    fake = FakeClock()

    def failing(tick: int) -> None:
        fake.now += 1.0
        raise ValueError("room exploded")

    loop = TickLoop(30, failing, clock=fake)
    with pytest.raises(ValueError, match="room exploded"):
        await loop.run()
    assert not loop.running
    with pytest.raises(ValueError):
        await loop.run()  # not stuck in a "running" state


@pytest.mark.timeout(10)
async def test_run_twice_concurrently_is_invalid_state() -> None:
    first_tick = asyncio.Event()
    loop = TickLoop(1, lambda tick: first_tick.set())
    task = asyncio.create_task(loop.run())
    await first_tick.wait()
    with pytest.raises(InvalidState):
        await loop.run()
    loop.stop()
    await task


# --- TickLoop in real time ----------------------------------------------------------------


@pytest.mark.timeout(10)
async def test_stop_wakes_a_waiting_loop_immediately() -> None:
    first_tick = asyncio.Event()
    loop = TickLoop(1, lambda tick: first_tick.set())  # next deadline is 1 s away
    task = asyncio.create_task(loop.run())
    await first_tick.wait()
    started = time.monotonic()
    loop.stop()
    await asyncio.wait_for(task, timeout=5)
    assert loop.stats.ticks_run == 1
    assert time.monotonic() - started < 0.9  # did not wait for the 1 s deadline


@pytest.mark.timeout(10)
async def test_30_ticks_at_30_hz_take_about_one_second() -> None:
    done = asyncio.Event()
    ticks: list[int] = []

    def step(tick: int) -> None:
        ticks.append(tick)
        if tick == 29:
            done.set()
            loop.stop()

    loop = TickLoop(30, step)
    started = time.monotonic()
    await loop.run()
    elapsed = time.monotonic() - started
    assert ticks == list(range(30))
    # Tick 29 is due 29/30 s after tick 0; generous upper bound for a shared 2-core machine.
    assert 0.95 <= elapsed < 2.5
