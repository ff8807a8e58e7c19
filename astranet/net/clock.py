"""Client-side clock sync: round-trip time and the server's clock and tick, from Pongs.

Operations: feed every ``Pong`` (WIRE: ``client_time_ms`` echoed, ``server_time_ms``,
``server_tick``) together with the client time it arrived at; read back the smoothed RTT, the
client->server clock offset, ``server_time_ms(now)`` and ``estimated_server_tick(now)`` as a
float tick, so inputs can be stamped and interpolation can run on the server's timeline.

Goals: pure (no clock reads, no I/O; the caller passes its own monotonic-or-wall milliseconds,
but must use the same clock for ``client_send_ms``, ``client_recv_ms`` and ``now``); robust to
asymmetric outliers: a sample delayed on one leg only has a large RTT, so the offset uses the
lowest-RTT samples of a bounded window (NTP's "clock filter" idea) and is then smoothed.

Estimators:

* RTT, RFC 6298 section 2: the first sample sets ``srtt = R`` and ``rttvar = R / 2``; later
  samples update ``rttvar = (1 - beta) * rttvar + beta * |srtt - R|`` then
  ``srtt = (1 - alpha) * srtt + alpha * R`` with alpha = 1/8, beta = 1/4 (the RFC's gains:
  a ~8-sample memory for the mean, ~4 for the deviation). ``rto_ms`` is ``srtt + 4 * rttvar``.
* Offset (NTP): ``offset = server_time - (send + recv) / 2``; exact when both legs take equal
  time, wrong by half the leg difference otherwise. Target = median offset of the
  ``BEST_SAMPLES_FRACTION`` lowest-RTT samples in the window; the published offset moves
  toward it by ``OFFSET_GAIN`` per sample (the first sample sets it) so it never jumps on a
  single Pong, except that a disagreement above ``OFFSET_STEP_MS`` is taken at once (a
  suspended laptop or a server clock step is not something to slew through slowly).
* Tick: assumes the server ticks at a fixed ``tick_hz``. A Pong's ``server_tick`` was current
  at ``server_time_ms``, i.e. the float tick lay in ``[tick, tick + 1)``; taking the middle,
  each sample gives the server time of tick 0, and the window's median is used.

Limits: ``MAX_CLOCK_SAMPLES`` samples (16 s at 2 Pings/s); samples with a negative, non-finite
or above ``MAX_RTT_MS`` RTT are rejected (``add_pong`` returns False).
Benchmark: none; it runs a few times per second.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass

from astranet.errors import ConfigurationError, InvalidState

__all__ = [
    "BEST_SAMPLES_FRACTION",
    "MAX_CLOCK_SAMPLES",
    "MAX_RTT_MS",
    "OFFSET_GAIN",
    "OFFSET_STEP_MS",
    "PongSample",
    "RttEstimator",
    "ServerClock",
]

# 32 samples at the client's 2 Pings/s (WIRE rule 5 budget) is a 16 s window: long enough to
# hold a few low-RTT samples, short enough to follow a drifting server tick loop.
MAX_CLOCK_SAMPLES = 32
# A quarter of the window (at least one sample) is NTP-like: the fastest round trips are the
# ones whose two legs were most nearly equal, so their offsets are the most trustworthy.
BEST_SAMPLES_FRACTION = 0.25
# The published offset moves 20 % of the way to the filtered target per sample: ~5 samples
# (2.5 s) to settle, slow enough that interpolation render time does not visibly jump.
OFFSET_GAIN = 0.2
# Beyond this disagreement, slewing would take many seconds of wrong timestamps; step instead.
OFFSET_STEP_MS = 1000.0
# A "round trip" longer than a minute is a stale or forged Pong, not a measurement.
MAX_RTT_MS = 60_000.0

# RFC 6298 section 2 gains and initial RTO.
RTT_ALPHA = 1.0 / 8.0
RTT_BETA = 1.0 / 4.0
RTT_K = 4.0
INITIAL_RTO_MS = 1000.0


class RttEstimator:
    """RFC 6298 smoothed RTT and RTT variance, in milliseconds."""

    __slots__ = ("rttvar_ms", "samples", "srtt_ms")

    def __init__(self) -> None:
        self.srtt_ms: float | None = None
        self.rttvar_ms: float | None = None
        self.samples = 0

    def add_sample(self, rtt_ms: float) -> bool:
        """Fold one RTT measurement in; return False (and ignore it) when it is impossible."""
        if not (math.isfinite(rtt_ms) and 0.0 <= rtt_ms <= MAX_RTT_MS):
            return False
        if self.srtt_ms is None or self.rttvar_ms is None:
            self.srtt_ms = rtt_ms
            self.rttvar_ms = rtt_ms / 2.0
        else:
            # Variance first, against the old srtt, as RFC 6298 orders it.
            self.rttvar_ms = (1 - RTT_BETA) * self.rttvar_ms + RTT_BETA * abs(self.srtt_ms - rtt_ms)
            self.srtt_ms = (1 - RTT_ALPHA) * self.srtt_ms + RTT_ALPHA * rtt_ms
        self.samples += 1
        return True

    @property
    def rto_ms(self) -> float:
        """Retransmission-style timeout: ``srtt + 4 * rttvar`` (1 s before any sample)."""
        if self.srtt_ms is None or self.rttvar_ms is None:
            return INITIAL_RTO_MS
        return self.srtt_ms + RTT_K * self.rttvar_ms


@dataclass(frozen=True, slots=True)
class PongSample:
    """One Ping/Pong exchange, all times in milliseconds."""

    client_send_ms: float
    client_recv_ms: float
    server_time_ms: float
    server_tick: int

    @property
    def rtt_ms(self) -> float:
        return self.client_recv_ms - self.client_send_ms

    @property
    def offset_ms(self) -> float:
        """server clock minus client clock, assuming symmetric legs (NTP)."""
        return self.server_time_ms - (self.client_send_ms + self.client_recv_ms) / 2.0


class ServerClock:
    """Estimates the server's clock and tick from Pong samples.

    ``tick_hz`` is the server's tick rate (``JoinAccepted.tick_hz``).
    """

    __slots__ = ("_offset_ms", "_samples", "_tick_origin_ms", "rtt", "tick_hz")

    def __init__(self, tick_hz: float, *, window: int = MAX_CLOCK_SAMPLES) -> None:
        if not (math.isfinite(tick_hz) and tick_hz > 0):
            raise ConfigurationError(f"ServerClock: tick_hz must be > 0, got {tick_hz!r}")
        if window < 1:
            raise ConfigurationError(f"ServerClock: window must be >= 1, got {window!r}")
        self.tick_hz = float(tick_hz)
        self.rtt = RttEstimator()
        self._samples: deque[PongSample] = deque(maxlen=window)
        self._offset_ms: float | None = None
        self._tick_origin_ms: float | None = None

    @property
    def synced(self) -> bool:
        """True once at least one valid Pong has been folded in."""
        return self._offset_ms is not None

    @property
    def offset_ms(self) -> float:
        """Smoothed server clock minus client clock (ms)."""
        if self._offset_ms is None:
            raise InvalidState("ServerClock has no Pong sample yet")
        return self._offset_ms

    @property
    def samples(self) -> tuple[PongSample, ...]:
        """The samples currently in the window, oldest first."""
        return tuple(self._samples)

    def add_pong(
        self,
        client_send_ms: float,
        client_recv_ms: float,
        server_time_ms: float,
        server_tick: int,
    ) -> bool:
        """Fold in one Pong; return False (and ignore it) if the sample is impossible."""
        sample = PongSample(
            float(client_send_ms), float(client_recv_ms), float(server_time_ms), int(server_tick)
        )
        if not (math.isfinite(sample.offset_ms) and server_tick >= 0):
            return False
        if not self.rtt.add_sample(sample.rtt_ms):
            return False
        self._samples.append(sample)
        self._update_offset()
        self._update_tick_origin()
        return True

    def server_time_ms(self, now_client_ms: float) -> float:
        """The server's clock now, estimated from the client's clock reading ``now_client_ms``."""
        return now_client_ms + self.offset_ms

    def estimated_server_tick(self, now_client_ms: float) -> float:
        """The server's current tick as a float (``12.5`` = halfway through tick 12)."""
        if self._tick_origin_ms is None:
            raise InvalidState("ServerClock has no Pong sample yet")
        elapsed_ms = self.server_time_ms(now_client_ms) - self._tick_origin_ms
        return elapsed_ms * self.tick_hz / 1000.0

    def _update_offset(self) -> None:
        best_count = max(1, int(len(self._samples) * BEST_SAMPLES_FRACTION))
        # Newest first so that, among equal RTTs, the most recent offsets win (a stable sort).
        fastest = sorted(reversed(self._samples), key=lambda s: s.rtt_ms)[:best_count]
        target = statistics.median(s.offset_ms for s in fastest)
        if self._offset_ms is None or abs(target - self._offset_ms) > OFFSET_STEP_MS:
            self._offset_ms = target
        else:
            self._offset_ms += OFFSET_GAIN * (target - self._offset_ms)

    def _update_tick_origin(self) -> None:
        tick_ms = 1000.0 / self.tick_hz
        # server_tick was current at server_time: assume mid-tick, the unbiased guess.
        origins = [s.server_time_ms - (s.server_tick + 0.5) * tick_ms for s in self._samples]
        self._tick_origin_ms = statistics.median(origins)
