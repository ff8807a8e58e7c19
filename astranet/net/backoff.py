"""Reconnect backoff: how long to wait before the next connection attempt.

Operations: ``next_delay()`` gives the wait before the next attempt and counts it;
``expired(elapsed_s)`` says whether the caller should give up; ``reset()`` after a
successful (re)connection.

Goals: pure and deterministic under a seeded ``random.Random`` (no clock reads, no sleeping:
the caller owns time), so tests can check every delay exactly; spread simultaneous clients
apart after a server restart so they do not reconnect in lock-step (the "thundering herd").

Jitter strategies (see the AWS Architecture Blog, "Exponential Backoff And Jitter"):

* proportional (default): ``base = min(max_s, initial_s * multiplier**attempt)`` and the delay
  is drawn uniformly from ``[base * (1 - jitter), base]``. ``jitter=0`` is plain exponential
  backoff, ``jitter=0.5`` is AWS "equal jitter" (the default: never less than half the base, so
  the growth stays visible), ``jitter=1`` is AWS "full jitter" (anywhere in ``[0, base]``).
* decorrelated (``decorrelated=True``): ``delay = min(max_s, uniform(initial_s, 3 * previous))``
  where ``previous`` starts at ``initial_s``; ``jitter`` is ignored. It spreads clients best but
  is not monotone, which makes it harder to reason about.

Limits: every delay is within ``[0, max_s]``; ``give_up_after_s`` bounds the whole reconnect
episode (WIRE rule 7 holds a seat for 30 s, hence the 30 s default). The attempt counter
saturates at ``MAX_EXPONENT`` so ``multiplier**attempt`` never overflows.
Benchmark: none; it runs once per reconnect attempt.
"""

from __future__ import annotations

import math
import random

from astranet.errors import ConfigurationError

__all__ = ["MAX_EXPONENT", "Backoff"]

# 2**64 times any sane initial delay is far above any cap; beyond this the base is the cap
# anyway, and stopping here keeps ``multiplier ** attempt`` a finite float.
MAX_EXPONENT = 64


class Backoff:
    """Exponential reconnect backoff with jitter and a give-up deadline.

    Typical use by a client::

        backoff = Backoff(rng=random.Random(seed))
        started = now()
        while not backoff.expired(now() - started):
            await asyncio.sleep(backoff.next_delay())
            if await try_connect():
                backoff.reset()
                break
    """

    __slots__ = (
        "_attempt",
        "_previous_s",
        "decorrelated",
        "give_up_after_s",
        "initial_s",
        "jitter",
        "max_s",
        "multiplier",
        "rng",
    )

    def __init__(
        self,
        initial_s: float = 0.1,
        max_s: float = 5.0,
        multiplier: float = 2.0,
        jitter: float = 0.5,
        give_up_after_s: float | None = 30.0,
        rng: random.Random | None = None,
        *,
        decorrelated: bool = False,
    ) -> None:
        _require(math.isfinite(initial_s) and initial_s > 0, "initial_s must be > 0")
        _require(math.isfinite(max_s) and max_s >= initial_s, "max_s must be >= initial_s")
        _require(math.isfinite(multiplier) and multiplier >= 1.0, "multiplier must be >= 1")
        _require(0.0 <= jitter <= 1.0, "jitter must be in [0, 1]")
        _require(
            give_up_after_s is None or (give_up_after_s >= 0 and not math.isnan(give_up_after_s)),
            "give_up_after_s must be >= 0 or None (never give up)",
        )
        self.initial_s = float(initial_s)
        self.max_s = float(max_s)
        self.multiplier = float(multiplier)
        self.jitter = float(jitter)
        self.give_up_after_s = give_up_after_s
        # A private unseeded generator by default: clients must not share one sequence.
        self.rng = rng if rng is not None else random.Random()
        self.decorrelated = decorrelated
        self._attempt = 0
        self._previous_s = self.initial_s

    @property
    def attempt(self) -> int:
        """How many delays ``next_delay()`` has handed out since the last reset."""
        return self._attempt

    def base_delay(self, attempt: int) -> float:
        """The un-jittered delay of ``attempt`` (0-based): ``initial * multiplier**attempt``,
        capped at ``max_s``."""
        exponent = min(max(attempt, 0), MAX_EXPONENT)
        return min(self.max_s, self.initial_s * self.multiplier**exponent)

    def next_delay(self) -> float:
        """Return the seconds to wait before the next attempt and advance the counter."""
        if self.decorrelated:
            upper = max(self.initial_s, 3.0 * self._previous_s)
            delay = min(self.max_s, self.rng.uniform(self.initial_s, upper))
        else:
            base = self.base_delay(self._attempt)
            delay = self.rng.uniform(base * (1.0 - self.jitter), base)
        self._previous_s = delay
        self._attempt += 1
        return delay

    def expired(self, elapsed_s: float) -> bool:
        """True once ``elapsed_s`` (time since the connection was lost) reaches the deadline."""
        if self.give_up_after_s is None:
            return False
        return elapsed_s >= self.give_up_after_s

    def reset(self) -> None:
        """Start over: call after a successful connection."""
        self._attempt = 0
        self._previous_s = self.initial_s


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigurationError(f"Backoff: {message}")
