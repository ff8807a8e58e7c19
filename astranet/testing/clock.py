"""FakeClock: a clock a test moves by hand (for every ``clock=`` argument in astranet).

Limits: none. Benchmark: none.
"""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """A monotonic clock in seconds that only moves when told: ``clock.now += 0.5`` or
    ``clock.advance(0.5)``. Pass it wherever astranet takes ``clock: Callable[[], float]``."""

    __test__ = False  # not a pytest test class

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move forward ``seconds``; returns the new time."""
        self.now += seconds
        return self.now
