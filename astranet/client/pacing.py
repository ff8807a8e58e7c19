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
than guess those, the pacer measures the outcome. An input *missed* when a snapshot of its
target tick (or of a later tick) arrived without acknowledging it; each miss lengthens ``lead``
by ``MISS_STEP_MS`` and each hit shortens it. Two cases are neither, so that noise does not
ratchet the lead up (a long lead only moves the input a whole tick early):

* *unjudged*: the input was first acknowledged by a later tick than its target, but no snapshot
  of the ticks in between arrived (a server that caught up after a stall steps several ticks
  and its snapshots of the first ones never leave; a slow client's unsent snapshot is replaced
  by the newer one), so the input may well have been applied on time: ``unjudged`` counts them;
* *excused*: the client's own frame loop stalled (the input came out of a :meth:`steps_due`
  call more than ``STALL_GAP_PERIODS`` periods after the previous one), or the phase estimate
  was still in its first block (it only moves earlier while it settles); such a miss counts in
  ``misses`` and ``late_misses``, but more lead would not have saved it, so the lead stays.

Hits shorten the lead by ``PROBE_DECAY_MS`` until the first miss that moves it (a fresh pacer
walks its lead down from ``DEFAULT_LEAD_MS`` to what the link needs within a few seconds), by
``HIT_DECAY_MS`` after it: misses cost a whole period of latency, so the lead then settles
where about one input in ``MISS_STEP_MS / HIT_DECAY_MS`` (400) misses.
Limits: lead within ``[MIN_LEAD_MS, MAX_LEAD_PERIODS periods]`` (a lead above one period aims
an input more than a tick ahead: a long round trip, or frames as coarse as ticks); at most
``max_steps`` inputs per call (a longer stall skips targets instead of bursting);
``MAX_TARGETS`` targets remembered; ``SEEN_TICKS`` snapshot ticks remembered for judging.
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
    "PROBE_DECAY_MS",
    "SEEN_TICKS",
    "SHIFT_SNAPSHOTS",
    "STALL_GAP_PERIODS",
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
# Before the first miss: 15 ms of lead come off in 60 hits (2 s at 30 Hz), so a fresh client
# finds the lead its link needs (a loopback server needs a few ms) instead of keeping 20 ms.
PROBE_DECAY_MS = 0.25
# Inputs produced by a steps_due call that came this many periods after the previous one come
# from a stalled frame loop (even a loop as coarse as the ticks calls once a period): their
# misses say nothing about the lead.
STALL_GAP_PERIODS = 2.0
# Snapshots in a row over half a period late that mean the server's schedule moved (it skipped
# ticks), not a stall: a catch-up burst delivers at most 4 (DEFAULT_MAX_CATCH_UP + 1) late.
SHIFT_SNAPSHOTS = 6
SEEN_TICKS = 64  # ticks of recent snapshots, to tell a miss from an unseen snapshot
PHASE_BLOCK = 30  # snapshots per block of the phase minimum (~1 s at 30 Hz)
MAX_TARGETS = 64  # inputs produced but not yet sent (a frame produces at most a few)
# Targets further than this ahead of the schedule mean the tick numbering changed (a resume on
# a restarted server): start again from the schedule.
_RESYNC_TICKS = 4


class TickPacer:
    """Phase-locked input schedule for one session (make a new one per (re)join)."""

    __slots__ = (
        "_late_targets",
        "_max_lead_ms",
        "_next_target",
        "_phase_cur",
        "_phase_n",
        "_phase_prev",
        "_probing",
        "_raised_below",
        "_seen_ticks",
        "_shift_min",
        "_shift_run",
        "_targets",
        "_token_ms",
        "_tokens",
        "hits",
        "late_misses",
        "lead_ms",
        "max_steps",
        "misses",
        "period_ms",
        "shifts",
        "skipped",
        "unjudged",
    )

    def __init__(self, tick_hz: int, *, lead_ms: float = DEFAULT_LEAD_MS, max_steps: int = 3):
        self.period_ms = 1000.0 / tick_hz
        self._max_lead_ms = MAX_LEAD_PERIODS * self.period_ms
        self.lead_ms = min(max(lead_ms, MIN_LEAD_MS), self._max_lead_ms)
        self.max_steps = max_steps
        self.hits = 0
        self.misses = 0
        self.skipped = 0  # targets skipped after a stall longer than max_steps periods
        self.unjudged = 0  # acknowledged late, but the snapshots in between never arrived
        self.shifts = 0  # times the schedule was seen to move later (SHIFT_SNAPSHOTS late)
        self._shift_run = 0  # snapshots in a row over half a period later than the estimate
        self._shift_min = math.inf
        self.late_misses = 0  # misses that do not move the lead (stall, settling phase)
        self._probing = True  # no miss yet: hits shorten the lead by PROBE_DECAY_MS
        self._seen_ticks: deque[int] = deque(maxlen=SEEN_TICKS)  # ascending
        self._late_targets: deque[int] = deque(maxlen=MAX_TARGETS)  # excused (late_misses)
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
        seen = self._seen_ticks
        if not seen or server_tick > seen[-1]:
            seen.append(server_tick)
        elif server_tick < seen[-1]:  # numbered anew (a restarted server): forget the old ticks
            seen.clear()
            seen.append(server_tick)
        value = arrival_ms - server_tick * self.period_ms
        if value > self.phase_ms + self.period_ms / 2:  # later than the schedule says
            self._shift_run += 1
            self._shift_min = min(self._shift_min, value)
            if self._shift_run >= SHIFT_SNAPSHOTS:  # the schedule itself moved later
                self.shifts += 1
                self._phase_prev, self._phase_cur, self._phase_n = math.inf, self._shift_min, 0
                self._shift_run, self._shift_min = 0, math.inf
                return
        else:
            self._shift_run, self._shift_min = 0, math.inf
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
        stalled = False
        if self._token_ms is not None:
            elapsed = max(0.0, now_ms - self._token_ms)
            self._tokens = min(self._tokens + elapsed / self.period_ms, float(self.max_steps))
            stalled = elapsed > STALL_GAP_PERIODS * self.period_ms
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
        if stalled or math.isinf(self._phase_prev):
            # A stalled frame loop, or the phase estimate's first block (it only moves earlier
            # while it settles): these inputs' misses will not move the lead.
            self._late_targets.extend(range(first, first + steps))
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
        """An input aimed at ``target`` was first acknowledged by the snapshot of ``acked_tick``
        (observe that snapshot first: a miss needs a snapshot of a tick in ``[target,
        acked_tick)`` that arrived without acknowledging the input)."""
        if acked_tick <= target:
            self.hits += 1
            decay = PROBE_DECAY_MS if self._probing else HIT_DECAY_MS
            self.lead_ms = max(self.lead_ms - decay, MIN_LEAD_MS)
            return
        if not self._saw_tick_in(target, acked_tick):
            self.unjudged += 1
            return
        self.misses += 1
        if target in self._late_targets:
            self.late_misses += 1
            return
        self._probing = False
        if target >= self._raised_below:
            self.lead_ms = min(self.lead_ms + MISS_STEP_MS, self._max_lead_ms)
            self._raised_below = self._next_target if self._next_target is not None else 0

    def _saw_tick_in(self, low: int, high: int) -> bool:
        """Whether a snapshot of a tick in ``[low, high)`` arrived (recent ticks only)."""
        for tick in reversed(self._seen_ticks):
            if tick < high:
                return tick >= low
        return False
