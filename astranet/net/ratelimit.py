"""Per-connection rate limiting (WIRE rule 5): a token bucket plus a flood policy.

Every message a client sends costs one token, checked *before* decoding so a flood of
garbage costs a clock read and a float compare per message.

Default numbers and why (``RateLimitConfig``):
  * A well-behaved client sends 30 inputs + 30 acks + 2 pings = 62 messages/s.
    ``rate_per_s = 120`` refills at almost twice that, so steady play never dips the bucket.
  * ``burst = 240`` tokens: after a 2 s stall the client's queued traffic (124 messages) plus
    a join burst (Hello, FindOrCreate/Resume, a few acks, under 10) arrives at once and still
    fits with ~2x margin; a full bucket is ~4 s of normal traffic.
  * Over-budget messages are dropped. The first drop is answered with
    ``RateLimited{retry_after_ms}`` and then at most one reply per ``reply_interval_s``
    (0.1 s), so a flood of N messages earns at most 10 replies a second, not N.
  * A client is closed 1008 ``rate limit exceeded`` once it has more than ``max_drops``
    (100) drops "in quick succession": drops fill a second, leaky bucket that drains at
    ``max_drops / drop_window_s`` (100 per 5 s = 20/s). A client that overshoots once by a
    few dozen messages is only slowed; one that keeps sending above 120/s + 20/s is cut
    within seconds (a 1000 msg/s flood is closed about 0.35 s after its burst is spent).

Clock: an injected callable returning monotonic seconds; nothing here reads the wall clock.
Benchmark: part of the full InputFrame path in ``benchmarks/protocol.py``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

from astranet.errors import LocalProtocolError

__all__ = ["Admission", "FloodGuard", "RateLimitConfig", "TokenBucket"]

Clock = Callable[[], float]


class TokenBucket:
    """Classic token bucket: ``burst`` capacity, refilled at ``rate_per_s``; starts full."""

    __slots__ = ("_clock", "_stamp", "burst", "rate_per_s", "tokens")

    def __init__(self, rate_per_s: float, burst: float, clock: Clock) -> None:
        if not (rate_per_s > 0 and burst >= 1):
            raise LocalProtocolError(f"need rate_per_s > 0 and burst >= 1: {rate_per_s}, {burst}")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self.tokens = float(burst)
        self._clock = clock
        self._stamp = clock()

    def try_take(self, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if available; False (and take nothing) otherwise."""
        now = self._clock()
        elapsed = now - self._stamp
        self._stamp = now
        tokens = self.tokens
        if elapsed > 0:  # a clock that steps backwards must not drain the bucket
            tokens += elapsed * self.rate_per_s
            if tokens > self.burst:  # min(), without the builtin call (once per message)
                tokens = self.burst
        if tokens >= cost:
            self.tokens = tokens - cost
            return True
        self.tokens = tokens
        return False

    def retry_after_s(self, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens will be available (0 if they are now)."""
        self.try_take(0.0)  # refill only
        missing = cost - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate_per_s


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Rate-limit policy of one connection; the module docstring justifies the defaults."""

    rate_per_s: float = 120.0
    burst: float = 240.0
    reply_interval_s: float = 0.1
    max_drops: int = 100
    drop_window_s: float = 5.0


class Admission(enum.Enum):
    """What to do with one incoming message."""

    ACCEPT = "accept"
    DROP = "drop"  # over budget, stay quiet (a reply went out recently)
    DROP_AND_REPLY = "drop_and_reply"  # over budget, answer RateLimited
    CLOSE = "close"  # kept flooding: close 1008 "rate limit exceeded"


# Enum members through the class cost a lookup each (~70 ns); admit() runs per message.
_ACCEPT = Admission.ACCEPT
_CLOSE = Admission.CLOSE
_DROP = Admission.DROP
_DROP_AND_REPLY = Admission.DROP_AND_REPLY


class FloodGuard:
    """Applies a ``RateLimitConfig``: one ``admit()`` call per incoming message."""

    __slots__ = ("_bucket", "_clock", "_config", "_drops", "_last_reply")

    def __init__(self, config: RateLimitConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._bucket = TokenBucket(config.rate_per_s, config.burst, clock)
        # Drop allowance: each drop takes a token; empty means "kept flooding".
        self._drops = TokenBucket(config.max_drops / config.drop_window_s, config.max_drops, clock)
        self._last_reply: float | None = None

    def admit(self) -> Admission:
        if self._bucket.try_take():
            return _ACCEPT
        if not self._drops.try_take():
            return _CLOSE
        now = self._clock()
        if self._last_reply is None or now - self._last_reply >= self._config.reply_interval_s:
            self._last_reply = now
            return _DROP_AND_REPLY
        return _DROP

    def retry_after_ms(self) -> int:
        """Milliseconds until one message fits the budget again (at least 1)."""
        return max(1, math.ceil(self._bucket.retry_after_s() * 1000))
