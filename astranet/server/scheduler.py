"""The one fixed-rate clock that drives every room's tick.

Two parts, split the websockets way:

* :class:`TickClock` is pure (no asyncio, never reads a clock; time is passed in). Tick ``n`` is
  scheduled at ``start + (n + skipped) / tick_hz`` -- an absolute time computed from integers,
  so error never accumulates however long the server runs (a loop of ``sleep(period)`` drifts
  by every wake-up's lateness). A tick is *late* when it starts more than half a period after
  its scheduled time.
* :class:`TickLoop` is the asyncio edge: one task that waits for each deadline, calls the
  synchronous ``step(tick)`` (which steps every room; never a loop per room or connection),
  and records duration and lateness in :class:`TickStats` and optional callbacks (metrics).

Catch-up rule (``TickClock.due_ticks``): let ``slot`` be the newest tick whose scheduled time
has passed. If ``slot - next_tick <= max_catch_up`` (default 3, i.e. 100 ms at 30 Hz), every
missed tick runs back-to-back (at most ``max_catch_up + 1`` steps in a burst) so the simulation
loses no time. If we are further behind (a
GC pause, a suspended laptop), only one tick runs now and the ``slot - next_tick`` missed ticks
are *skipped*: the schedule's epoch moves forward by that many periods and they are counted in
``TickStats.skipped_ticks``. Tick numbers stay contiguous -- every number is stepped exactly
once -- so ``tick * dt`` remains simulation time; a skip makes simulation time fall behind
wall time instead of spiralling into ever-longer catch-up bursts.

Limits: ``step`` must be synchronous and return within the period to keep up; an exception
from ``step`` propagates out of ``run()`` (fail fast; isolating one room's failure is the
caller's job). Stop latency is immediate (the wait is on an event, not a bare sleep).
Benchmark: none; the timing test in tests/server/test_scheduler.py checks 30 ticks ~ 1 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from astranet.errors import ConfigurationError, InvalidState

__all__ = ["DEFAULT_MAX_CATCH_UP", "TickClock", "TickLoop", "TickPlan", "TickStats"]

DEFAULT_MAX_CATCH_UP = 3  # ticks run back-to-back before we skip; 100 ms of backlog at 30 Hz
MIN_TICK_HZ, MAX_TICK_HZ = 1, 240  # same range as --tick-hz


@dataclass(frozen=True, slots=True)
class TickPlan:
    """What to do now: step ``ticks`` in order; ``skipped`` slots were dropped before them."""

    ticks: range
    skipped: int = 0


class TickClock:
    """Pure schedule arithmetic for a fixed tick rate. Mutated only by ``due_ticks``."""

    def __init__(
        self, tick_hz: int, start_time: float, max_catch_up: int = DEFAULT_MAX_CATCH_UP
    ) -> None:
        if type(tick_hz) is not int or not MIN_TICK_HZ <= tick_hz <= MAX_TICK_HZ:
            raise ConfigurationError(
                f"tick_hz: expected an integer {MIN_TICK_HZ}..{MAX_TICK_HZ}, got {tick_hz!r}"
            )
        if max_catch_up < 0:
            raise ConfigurationError(f"max_catch_up: expected >= 0, got {max_catch_up!r}")
        self.tick_hz = tick_hz
        self.period_s = 1.0 / tick_hz
        self.start_time = start_time
        self.max_catch_up = max_catch_up
        self.next_tick = 0  # the next tick number to step
        self.skipped_total = 0  # slots skipped so far; shifts the epoch

    def scheduled_time(self, tick: int) -> float:
        """Absolute time tick ``tick`` is due: ``start + (tick + skipped) / hz``."""
        return self.start_time + (tick + self.skipped_total) / self.tick_hz

    def next_deadline(self) -> float:
        """When ``next_tick`` is due."""
        return self.scheduled_time(self.next_tick)

    def lateness(self, tick: int, started_at: float) -> float:
        """Seconds between the tick's scheduled time and when it started (negative = early)."""
        return started_at - self.scheduled_time(tick)

    def is_late(self, tick: int, started_at: float) -> bool:
        """Late = started more than half a period after schedule (exactly half is on time)."""
        return self.lateness(tick, started_at) > self.period_s / 2

    def current_slot(self, now: float) -> int:
        """The newest slot (tick + skipped) whose scheduled time is <= now; -1 before start."""
        slot = math.floor((now - self.start_time) * self.tick_hz)
        # The float product can land one off at exact boundaries; settle it against the
        # same expression scheduled_time uses so the two never disagree.
        while self.start_time + (slot + 1) / self.tick_hz <= now:
            slot += 1
        while slot >= 0 and self.start_time + slot / self.tick_hz > now:
            slot -= 1
        return max(slot, -1)

    def due_ticks(self, now: float) -> TickPlan:
        """Which ticks to step at ``now`` under the catch-up rule; advances the clock."""
        newest_due = self.current_slot(now) - self.skipped_total
        behind = newest_due - self.next_tick
        if behind < 0:
            return TickPlan(range(self.next_tick, self.next_tick))  # woke early: nothing due
        skipped = 0
        if behind > self.max_catch_up:
            skipped = behind
            self.skipped_total += skipped
        first = self.next_tick
        last = newest_due - skipped
        self.next_tick = last + 1
        return TickPlan(range(first, last + 1), skipped)


@dataclass(slots=True)
class TickStats:
    """Running totals of the loop; constant size however long it runs."""

    ticks_run: int = 0
    late_ticks: int = 0
    skipped_ticks: int = 0
    last_duration_s: float = 0.0
    max_duration_s: float = 0.0
    total_duration_s: float = 0.0
    max_lateness_s: float = 0.0

    @property
    def mean_duration_s(self) -> float:
        return self.total_duration_s / self.ticks_run if self.ticks_run else 0.0

    def record(self, duration_s: float, lateness_s: float, late: bool) -> None:
        self.ticks_run += 1
        self.late_ticks += late
        self.last_duration_s = duration_s
        self.max_duration_s = max(self.max_duration_s, duration_s)
        self.total_duration_s += duration_s
        self.max_lateness_s = max(self.max_lateness_s, lateness_s)


# on_tick(tick, duration_s, lateness_s, late); on_skip(count)
TickCallback = Callable[[int, float, float, bool], None]
SkipCallback = Callable[[int], None]


class TickLoop:
    """One asyncio task stepping ``step(tick)`` at ``tick_hz``. Start with ``await run()``."""

    def __init__(
        self,
        tick_hz: int,
        step: Callable[[int], None],
        clock: Callable[[], float] = time.monotonic,
        *,
        max_catch_up: int = DEFAULT_MAX_CATCH_UP,
        on_tick: TickCallback | None = None,
        on_skip: SkipCallback | None = None,
    ) -> None:
        TickClock(tick_hz, 0.0, max_catch_up)  # validate arguments now, not inside run()
        self.tick_hz = tick_hz
        self.max_catch_up = max_catch_up
        self.stats = TickStats()
        self._step = step
        self._clock = clock
        self._on_tick = on_tick
        self._on_skip = on_skip
        self._stopping = asyncio.Event()
        self._running = False
        self.tick_clock: TickClock | None = None  # set by run(); exposed for inspection

    @property
    def running(self) -> bool:
        return self._running

    def stop(self) -> None:
        """Ask ``run()`` to return after the current tick; safe to call from ``step``."""
        self._stopping.set()

    async def run(self) -> None:
        """Step ticks until ``stop()``. Tick 0 runs immediately."""
        if self._running:
            raise InvalidState("TickLoop.run() is already running")
        self._running = True
        tick_clock = self.tick_clock = TickClock(self.tick_hz, self._clock(), self.max_catch_up)
        try:
            while not self._stopping.is_set():
                delay_s = tick_clock.next_deadline() - self._clock()
                if delay_s > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay_s):
                            await self._stopping.wait()
                    continue  # re-check stop, then re-read the clock
                plan = tick_clock.due_ticks(self._clock())
                if plan.skipped:
                    self.stats.skipped_ticks += plan.skipped
                    if self._on_skip is not None:
                        self._on_skip(plan.skipped)
                for tick in plan.ticks:
                    self._run_one(tick_clock, tick)
                    if self._stopping.is_set():
                        break
                # Let connections run between bursts (catch-up ticks themselves run
                # back-to-back, but no burst monopolises the loop past one yield).
                await asyncio.sleep(0)
        finally:
            self._running = False
            self._stopping.clear()

    def _run_one(self, tick_clock: TickClock, tick: int) -> None:
        started = self._clock()
        lateness_s = tick_clock.lateness(tick, started)
        late = tick_clock.is_late(tick, started)
        self._step(tick)  # synchronous: no other coroutine runs during a room step
        duration_s = self._clock() - started
        self.stats.record(duration_s, lateness_s, late)
        if self._on_tick is not None:
            self._on_tick(tick, duration_s, lateness_s, late)
