"""Input pacing: produce each input just before the server tick that will apply it.

Why: the server applies queued inputs at the start of each tick. An input produced at a random
phase of the period waits 0..1 period in the server's queue, so input -> acknowledging snapshot
is one tick plus up to one more (p99 ~ 2 ticks). Produced ``lead`` before the tick's start, it
waits only ``lead`` and the snapshot of that very tick acknowledges it.

Operations (pure: times are passed in, in the client's monotonic milliseconds)::

    pacer.observe_snapshot(arrival_ms, server_tick)   # every snapshot read off the socket
    n = pacer.steps_due(now_ms)                       # each frame: inputs to produce now
    wake_ms = pacer.next_deadline_ms()                # optional: when to run the next frame
    target = pacer.take_target()                      # per input sent: the tick it aims at
    pacer.observe_applied(target, acked_tick)         # its first acknowledging snapshot

Tick phase: snapshot ``k`` arrives at about ``phase + k * period``, where ``phase`` is the
minimum of ``arrival - tick * period`` over a sliding window of one to two seconds (two blocks
of ``PHASE_BLOCK`` snapshots): a minimum is robust to snapshots delayed by the network or by
the server's send order, and the window forgets a phase that moved later (a server that skipped
ticks) within two seconds; an earlier one is taken at once. The input aimed at tick ``k`` is
due at ``phase + k * period - lead``.

Rate: at most one input per period of the client's clock (plus a bucket of ``max_steps`` for
catch-up after a stall): when the lead grows, deadlines come early, and producing for each would
push extra inputs into the server's queue, where each waits a tick for good; such a target is
skipped. One miss raises the lead once: the inputs already in flight then miss too, and count
as misses without raising it again.

Lead: it must cover the client's own frame granularity (an input is produced by the first frame
after its deadline), the round trip and the server's delay from tick start to snapshot. Rather
than guess those, the pacer measures the outcome: an input first acknowledged by a snapshot of
a later tick than its target *missed*, and each miss lengthens ``lead`` by ``MISS_STEP_MS``;
each hit shortens it by ``HIT_DECAY_MS``. Misses cost a whole period of latency, so the decay is
slow: the lead settles where about one input in ``MISS_STEP_MS / HIT_DECAY_MS`` (400) misses.
Limits: lead within ``[MIN_LEAD_MS, MAX_LEAD_PERIODS periods]`` (a lead above one period aims
an input more than a tick ahead: a long round trip, or frames as coarse as ticks); at most
``max_steps`` inputs per call (a longer stall skips targets instead of bursting);
``MAX_TARGETS`` targets remembered.
Before the first snapshot nothing is due (a real client syncs before it plays).
Benchmark: ``astranet-loadtest`` (input -> snapshot latency; docs/benchmarks.md).
"""

from __future__ import annotations

import math
from collections import deque

__all__ = [
    "DEFAULT_LEAD_MS",
    "HIT_DECAY_MS",
    "MAX_LEAD_PERIODS",
    "MAX_TARGETS",
    "MIN_LEAD_MS",
    "MISS_STEP_MS",
    "PHASE_BLOCK",
    "TickPacer",
]

# Where the lead starts: misses raise it fast (MISS_STEP_MS each) but each costs that input a
# period; hits lower it slowly. 20 ms covers a loopback server's tick-to-snapshot delay plus
# a bot frame loop's stepping, so a fresh client rarely misses while it learns.
DEFAULT_LEAD_MS = 20.0
MIN_LEAD_MS = 1.0
MAX_LEAD_PERIODS = 8  # a 260 ms round trip at 30 Hz; beyond that pacing gains little anyway
MISS_STEP_MS = 4.0
HIT_DECAY_MS = 0.01  # 400 hits undo one miss: a steady miss rate of ~0.25 %
PHASE_BLOCK = 30  # snapshots per block of the phase minimum (~1 s at 30 Hz)
MAX_TARGETS = 64  # inputs produced but not yet sent (a frame produces at most a few)
# Targets further than this ahead of the schedule mean the tick numbering changed (a resume on
# a restarted server): start again from the schedule.
_RESYNC_TICKS = 4


class TickPacer:
    """Phase-locked input schedule for one session (make a new one per (re)join)."""

    __slots__ = (
        "_max_lead_ms",
        "_next_target",
        "_phase_cur",
        "_phase_n",
        "_phase_prev",
        "_raised_below",
        "_targets",
        "_token_ms",
        "_tokens",
        "hits",
        "lead_ms",
        "max_steps",
        "misses",
        "period_ms",
        "skipped",
    )

    def __init__(self, tick_hz: int, *, lead_ms: float = DEFAULT_LEAD_MS, max_steps: int = 3):
        self.period_ms = 1000.0 / tick_hz
        self._max_lead_ms = MAX_LEAD_PERIODS * self.period_ms
        self.lead_ms = min(max(lead_ms, MIN_LEAD_MS), self._max_lead_ms)
        self.max_steps = max_steps
        self.hits = 0
        self.misses = 0
        self.skipped = 0  # targets skipped after a stall longer than max_steps periods
        self._phase_cur = math.inf
        self._phase_prev = math.inf
        self._phase_n = 0
        self._next_target: int | None = None
        self._targets: deque[int] = deque(maxlen=MAX_TARGETS)
        # Production rate limit: one input per period of the client's clock (a bucket of at
        # most max_steps), so a lead that grows does not crowd extra inputs into the server's
        # queue (each would wait there a tick, for good): a target that comes due early is
        # skipped instead.
        self._tokens = 1.0
        self._token_ms: float | None = None
        # Targets below this were produced before the last lead increase: their misses are the
        # same event (they were in flight), so they do not raise the lead again.
        self._raised_below = -1

    @property
    def synced(self) -> bool:
        return not math.isinf(self.phase_ms)

    @property
    def phase_ms(self) -> float:
        """Estimated arrival time of tick 0's snapshot (inf before the first snapshot)."""
        return min(self._phase_prev, self._phase_cur)

    def observe_snapshot(self, arrival_ms: float, server_tick: int) -> None:
        """Fold one snapshot's arrival into the phase estimate."""
        value = arrival_ms - server_tick * self.period_ms
        if value < self._phase_cur:
            self._phase_cur = value
        self._phase_n += 1
        if self._phase_n >= PHASE_BLOCK:
            self._phase_prev, self._phase_cur, self._phase_n = self._phase_cur, math.inf, 0

    def steps_due(self, now_ms: float) -> int:
        """Inputs to produce now (their targets queue up for :meth:`take_target`)."""
        phase = self.phase_ms
        if math.isinf(phase):
            return 0
        if self._token_ms is not None:
            elapsed = max(0.0, now_ms - self._token_ms)
            self._tokens = min(self._tokens + elapsed / self.period_ms, float(self.max_steps))
        self._token_ms = now_ms
        newest_due = math.floor((now_ms + self.lead_ms - phase) / self.period_ms)
        first = self._next_target
        if first is None or first > newest_due + _RESYNC_TICKS:
            first = newest_due  # (re)start: aim at the tick whose deadline just passed
            if self._next_target is None:
                first += 1  # the very first time, wait for a deadline instead
        steps = newest_due - first + 1
        if steps <= 0:
            self._next_target = first
            return 0
        # Half a token of slack: a frame that wakes a little early still produces its input.
        allowed = max(0, min(steps, self.max_steps, int(self._tokens + 0.5)))
        if allowed < steps:  # the oldest due targets are dropped, never sent late in a burst
            self.skipped += steps - allowed
            first += steps - allowed
            steps = allowed
        self._tokens -= steps
        self._targets.extend(range(first, first + steps))
        self._next_target = first + steps
        return steps

    def next_deadline_ms(self) -> float | None:
        """When the next input falls due (None before the schedule started): a frame loop
        that can wake then (astranet.tools.fleet) produces it with no frame-granularity lag."""
        if self._next_target is None or not self.synced:
            return None
        return self.phase_ms + self._next_target * self.period_ms - self.lead_ms

    def take_target(self) -> int | None:
        """The target tick of the next input sent (None if it was not paced by this pacer)."""
        return self._targets.popleft() if self._targets else None

    def observe_applied(self, target: int, acked_tick: int) -> None:
        """An input aimed at ``target`` was first acknowledged by the snapshot of ``acked_tick``."""
        if acked_tick > target:
            self.misses += 1
            if target >= self._raised_below:
                self.lead_ms = min(self.lead_ms + MISS_STEP_MS, self._max_lead_ms)
                self._raised_below = self._next_target if self._next_target is not None else 0
        else:
            self.hits += 1
            self.lead_ms = max(self.lead_ms - HIT_DECAY_MS, MIN_LEAD_MS)
