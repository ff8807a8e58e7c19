"""Token bucket and flood policy (WIRE rule 5) against a fake clock."""

from __future__ import annotations

import pytest

from astranet.errors import LocalProtocolError
from astranet.net.ratelimit import Admission, FloodGuard, RateLimitConfig, TokenBucket
from astranet.testing import FakeClock


def test_bucket_starts_full_and_refills_at_rate() -> None:
    clock = FakeClock(1000.0)
    bucket = TokenBucket(rate_per_s=10, burst=5, clock=clock)
    assert all(bucket.try_take() for _ in range(5))
    assert not bucket.try_take()
    assert bucket.retry_after_s() == pytest.approx(0.1)
    clock.now += 0.1
    assert bucket.try_take()
    assert not bucket.try_take()
    clock.now += 100  # refill is capped at burst
    assert sum(bucket.try_take() for _ in range(10)) == 5


def test_backwards_clock_does_not_drain_or_fill() -> None:
    clock = FakeClock(1000.0)
    bucket = TokenBucket(rate_per_s=10, burst=2, clock=clock)
    bucket.try_take()
    clock.now -= 50
    assert bucket.tokens == pytest.approx(1.0)
    assert bucket.try_take()
    assert not bucket.try_take()


def test_bad_bucket_config_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        TokenBucket(0, 10, FakeClock(1000.0))
    with pytest.raises(LocalProtocolError):
        TokenBucket(10, 0, FakeClock(1000.0))


def test_well_behaved_client_is_never_limited_even_after_a_stall() -> None:
    clock = FakeClock(1000.0)
    guard = FloodGuard(RateLimitConfig(), clock)
    # Join burst, then 60 s of 30 inputs + 30 acks + 2 pings per second, spread evenly.
    assert all(guard.admit() is Admission.ACCEPT for _ in range(10))
    for _ in range(60 * 62):
        clock.now += 1 / 62
        assert guard.admit() is Admission.ACCEPT
    # A 2 s stall, then everything queued arrives at once.
    clock.now += 2.0
    assert all(guard.admit() is Admission.ACCEPT for _ in range(2 * 62))


def test_flood_is_dropped_with_bounded_replies_then_closed() -> None:
    clock = FakeClock(1000.0)
    config = RateLimitConfig(
        rate_per_s=100, burst=10, reply_interval_s=0.1, max_drops=50, drop_window_s=5.0
    )
    guard = FloodGuard(config, clock)
    verdicts = [guard.admit() for _ in range(10)]
    assert verdicts == [Admission.ACCEPT] * 10
    verdicts = [guard.admit() for _ in range(50)]  # same instant: all over budget
    assert verdicts[0] is Admission.DROP_AND_REPLY
    assert verdicts[1:] == [Admission.DROP] * 49  # one reply per 100 ms, not per message
    assert guard.retry_after_ms() == 10  # one token at 100/s
    assert guard.admit() is Admission.CLOSE  # the 51st drop in quick succession


def test_reply_interval_allows_one_reply_per_interval() -> None:
    clock = FakeClock(1000.0)
    guard = FloodGuard(RateLimitConfig(rate_per_s=1, burst=1, max_drops=1000), clock)
    guard.admit()
    replies = 0
    for _ in range(100):  # 1 s of flooding at 100 msg/s
        clock.now += 0.01
        replies += guard.admit() is Admission.DROP_AND_REPLY
    assert 9 <= replies <= 11


def test_brief_overshoot_is_forgiven() -> None:
    clock = FakeClock(1000.0)
    config = RateLimitConfig(rate_per_s=10, burst=10, max_drops=20, drop_window_s=2.0)
    guard = FloodGuard(config, clock)
    for _ in range(3):  # three overshoots of 15 drops, 5 s apart: never closed
        verdicts = [guard.admit() for _ in range(25)]
        assert Admission.CLOSE not in verdicts
        clock.now += 5.0
