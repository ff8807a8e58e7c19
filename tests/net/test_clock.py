"""Tests for astranet.net.clock with synthetic Ping/Pong exchanges."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.errors import ConfigurationError, InvalidState
from astranet.net.clock import MAX_CLOCK_SAMPLES, RttEstimator, ServerClock

TICK_HZ = 30.0


class SimulatedLink:
    """A client and server clock pair joined by two legs with their own delays.

    ``true_offset_ms`` is server clock minus client clock; the server ticks at TICK_HZ from
    ``tick_origin_ms`` on its own clock.
    """

    def __init__(self, true_offset_ms: float, tick_origin_ms: float = 1_000.0) -> None:
        self.true_offset_ms = true_offset_ms
        self.tick_origin_ms = tick_origin_ms

    def true_tick(self, server_time_ms: float) -> float:
        return (server_time_ms - self.tick_origin_ms) * TICK_HZ / 1000.0

    def exchange(self, clock: ServerClock, send_ms: float, up_ms: float, down_ms: float) -> None:
        server_time = send_ms + up_ms + self.true_offset_ms
        recv_ms = send_ms + up_ms + down_ms
        tick = math.floor(self.true_tick(server_time))
        assert clock.add_pong(send_ms, recv_ms, server_time, tick)


def test_rtt_first_sample_initialises_per_rfc6298() -> None:
    rtt = RttEstimator()
    assert rtt.srtt_ms is None
    assert rtt.rto_ms == 1000.0
    assert rtt.add_sample(100.0)
    assert rtt.srtt_ms == 100.0
    assert rtt.rttvar_ms == 50.0
    assert rtt.rto_ms == 300.0


def test_rtt_second_sample_uses_rfc6298_gains() -> None:
    rtt = RttEstimator()
    rtt.add_sample(100.0)
    rtt.add_sample(200.0)
    # rttvar = 3/4 * 50 + 1/4 * |100 - 200|, then srtt = 7/8 * 100 + 1/8 * 200
    assert rtt.rttvar_ms == pytest.approx(62.5)
    assert rtt.srtt_ms == pytest.approx(112.5)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), 1e9])
def test_rtt_ignores_impossible_samples(bad: float) -> None:
    rtt = RttEstimator()
    rtt.add_sample(50.0)
    assert not rtt.add_sample(bad)
    assert rtt.srtt_ms == 50.0
    assert rtt.samples == 1


def test_rtt_estimate_within_ten_percent_under_jitter() -> None:
    rng = random.Random(11)
    rtt = RttEstimator()
    # Legs of 40 ms plus 0-20 ms jitter each: the true mean RTT is 100 ms.
    for _ in range(300):
        rtt.add_sample(80.0 + rng.uniform(0, 20) + rng.uniform(0, 20))
    assert rtt.srtt_ms == pytest.approx(100.0, rel=0.10)
    assert rtt.rttvar_ms is not None and 0 < rtt.rttvar_ms < 20


def test_clock_converges_to_true_offset_under_symmetric_jitter() -> None:
    rng = random.Random(5)
    link = SimulatedLink(true_offset_ms=123_456.0)
    clock = ServerClock(TICK_HZ)
    for i in range(100):
        link.exchange(clock, 10_000.0 + 500.0 * i, 40 + rng.uniform(0, 30), 40 + rng.uniform(0, 30))
    assert clock.offset_ms == pytest.approx(link.true_offset_ms, abs=5.0)
    assert clock.rtt.srtt_ms == pytest.approx(110.0, rel=0.10)
    now = 80_000.0
    assert clock.server_time_ms(now) == pytest.approx(now + link.true_offset_ms, abs=5.0)


def test_estimated_server_tick_tracks_the_true_float_tick() -> None:
    rng = random.Random(6)
    link = SimulatedLink(true_offset_ms=-2_500.0, tick_origin_ms=3_333.0)
    clock = ServerClock(TICK_HZ)
    for i in range(64):
        link.exchange(clock, 20_000.0 + 470.0 * i, 30 + rng.uniform(0, 10), 30 + rng.uniform(0, 10))
    now = 60_000.0
    true_tick = link.true_tick(now + link.true_offset_ms)
    # Within half a tick (16.7 ms at 30 Hz): good enough to stamp inputs and pick snapshots.
    assert clock.estimated_server_tick(now) == pytest.approx(true_tick, abs=0.5)
    # And it advances at tick_hz per second of client time.
    advance = clock.estimated_server_tick(now + 1000.0) - clock.estimated_server_tick(now)
    assert advance == pytest.approx(TICK_HZ)


def test_asymmetric_outliers_do_not_wreck_the_offset() -> None:
    rng = random.Random(7)
    link = SimulatedLink(true_offset_ms=50_000.0)
    clock = ServerClock(TICK_HZ)
    for i in range(200):
        up = 25 + rng.uniform(0, 5)
        down = 25 + rng.uniform(0, 5)
        if rng.random() < 0.3:
            # One leg only stuck behind a retransmission: NTP offset off by 150-250 ms.
            up += rng.uniform(300, 500)
        link.exchange(clock, 1_000.0 + 500.0 * i, up, down)
    assert clock.offset_ms == pytest.approx(link.true_offset_ms, abs=5.0)


def test_offset_moves_smoothly_then_steps_on_a_big_jump() -> None:
    link = SimulatedLink(true_offset_ms=0.0)
    clock = ServerClock(TICK_HZ, window=4)
    for i in range(8):
        link.exchange(clock, 5_000.0 + 500.0 * i, 20, 20)
    assert clock.offset_ms == pytest.approx(0.0)
    link.true_offset_ms = 30.0
    for i in range(8, 12):
        link.exchange(clock, 5_000.0 + 500.0 * i, 20, 20)
        # Never a jump to the new value on one sample: slewed.
        assert 0.0 < clock.offset_ms < 30.0
    link.true_offset_ms = 10_000.0
    for i in range(12, 16):
        link.exchange(clock, 5_000.0 + 500.0 * i, 20, 20)
    assert clock.offset_ms == pytest.approx(10_000.0)


def test_clock_rejects_impossible_samples() -> None:
    clock = ServerClock(TICK_HZ)
    assert not clock.add_pong(1000.0, 900.0, 5000.0, 3)  # received before sent
    assert not clock.add_pong(1000.0, float("nan"), 5000.0, 3)
    assert not clock.add_pong(1000.0, 1100.0, 5000.0, -1)
    assert not clock.synced
    assert clock.add_pong(1000.0, 1100.0, 5000.0, 3)
    assert clock.synced


def test_clock_before_any_sample_raises_invalid_state() -> None:
    clock = ServerClock(TICK_HZ)
    with pytest.raises(InvalidState):
        clock.server_time_ms(0.0)
    with pytest.raises(InvalidState):
        clock.estimated_server_tick(0.0)


def test_sample_window_is_bounded() -> None:
    clock = ServerClock(TICK_HZ)
    for i in range(MAX_CLOCK_SAMPLES * 3):
        clock.add_pong(float(i), float(i) + 10.0, 100.0 + i, i)
    assert len(clock.samples) == MAX_CLOCK_SAMPLES
    assert clock.samples[-1].server_tick == MAX_CLOCK_SAMPLES * 3 - 1


@pytest.mark.parametrize("tick_hz", [0.0, -30.0, float("nan")])
def test_bad_tick_rate_raises_configuration_error(tick_hz: float) -> None:
    with pytest.raises(ConfigurationError):
        ServerClock(tick_hz)


@settings(max_examples=200)
@given(
    offset=st.floats(-1e9, 1e9),
    leg=st.floats(0.0, 5_000.0),
    send=st.floats(0.0, 1e12),
)
def test_symmetric_exchange_gives_exact_offset(offset: float, leg: float, send: float) -> None:
    clock = ServerClock(TICK_HZ)
    server_time = send + leg + offset
    assert clock.add_pong(send, send + 2 * leg, server_time, 0)
    assert clock.offset_ms == pytest.approx(offset, abs=1e-3 * max(1.0, abs(send) * 1e-9))
