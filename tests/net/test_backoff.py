"""Tests for astranet.net.backoff: growth, cap, jitter bounds, give-up, reset."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.errors import ConfigurationError
from astranet.net.backoff import Backoff


def test_without_jitter_delays_grow_geometrically_then_cap() -> None:
    backoff = Backoff(initial_s=0.1, max_s=1.0, multiplier=2.0, jitter=0.0)
    delays = [backoff.next_delay() for _ in range(7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    assert backoff.attempt == 7


def test_equal_jitter_stays_between_half_base_and_base() -> None:
    backoff = Backoff(initial_s=0.1, max_s=5.0, jitter=0.5, rng=random.Random(1))
    for attempt in range(20):
        base = backoff.base_delay(attempt)
        delay = backoff.next_delay()
        assert base * 0.5 <= delay <= base


def test_full_jitter_spreads_over_zero_to_base() -> None:
    backoff = Backoff(initial_s=1.0, max_s=1.0, jitter=1.0, rng=random.Random(2))
    delays = [backoff.next_delay() for _ in range(500)]
    assert all(0.0 <= d <= 1.0 for d in delays)
    # Full jitter must actually use the lower half too, not only sit near the base.
    assert min(delays) < 0.1
    assert max(delays) > 0.9


def test_same_seed_gives_same_delays_and_different_seeds_differ() -> None:
    first = [Backoff(rng=random.Random(7)).next_delay() for _ in range(3)]
    again = [Backoff(rng=random.Random(7)).next_delay() for _ in range(3)]
    assert first == again
    a = Backoff(rng=random.Random(7))
    b = Backoff(rng=random.Random(8))
    assert [a.next_delay() for _ in range(5)] != [b.next_delay() for _ in range(5)]


def test_decorrelated_jitter_is_bounded_by_initial_and_cap() -> None:
    backoff = Backoff(initial_s=0.1, max_s=2.0, decorrelated=True, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0.1 <= d <= 2.0 for d in delays)
    assert max(delays) == pytest.approx(2.0, rel=0.2)


def test_reset_restarts_from_initial_delay() -> None:
    backoff = Backoff(initial_s=0.1, jitter=0.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() == pytest.approx(0.1)


def test_give_up_after_deadline() -> None:
    backoff = Backoff(give_up_after_s=30.0)
    assert not backoff.expired(0.0)
    assert not backoff.expired(29.999)
    assert backoff.expired(30.0)
    assert backoff.expired(100.0)


def test_never_gives_up_when_deadline_is_none() -> None:
    assert not Backoff(give_up_after_s=None).expired(1e12)


def test_huge_attempt_counts_do_not_overflow() -> None:
    backoff = Backoff(initial_s=0.1, max_s=5.0, multiplier=10.0, jitter=0.0)
    for _ in range(500):
        delay = backoff.next_delay()
    assert delay == 5.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_s": 0.0},
        {"initial_s": -1.0},
        {"initial_s": 2.0, "max_s": 1.0},
        {"multiplier": 0.5},
        {"jitter": 1.5},
        {"jitter": -0.1},
        {"give_up_after_s": -1.0},
        {"initial_s": float("nan")},
    ],
)
def test_bad_parameters_raise_configuration_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        Backoff(**kwargs)


@settings(max_examples=300)
@given(
    initial_s=st.floats(0.001, 10.0),
    cap_factor=st.floats(1.0, 1000.0),
    multiplier=st.floats(1.0, 10.0),
    jitter=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32),
    decorrelated=st.booleans(),
)
def test_every_delay_is_within_zero_and_cap(
    initial_s: float,
    cap_factor: float,
    multiplier: float,
    jitter: float,
    seed: int,
    decorrelated: bool,
) -> None:
    max_s = initial_s * cap_factor
    backoff = Backoff(
        initial_s, max_s, multiplier, jitter, rng=random.Random(seed), decorrelated=decorrelated
    )
    for _ in range(30):
        assert 0.0 <= backoff.next_delay() <= max_s
