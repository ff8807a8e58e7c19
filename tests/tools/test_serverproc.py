"""/metrics parsing, windows, histogram quantiles and /proc CPU, against the real exporter."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.server.metrics import TICK_DURATION_BUCKETS_S, ServerMetrics
from astranet.tools.serverproc import (
    MetricsUnavailable,
    cpu_seconds,
    histogram_quantile,
    parse_metrics,
    scrape,
)


def _exported(
    ticks_s: list[float],
    *,
    late: int = 0,
    kicks: tuple[str, ...] = (),
    sent: int = 0,
    snapshot: int = 0,
    players: int = 0,
) -> str:
    metrics = ServerMetrics()
    for tick, seconds in enumerate(ticks_s):
        metrics.observe_tick(tick, seconds, 0.0, False)
    metrics.late_ticks += late
    for reason in kicks:
        metrics.count_kick(reason)
    metrics.bytes_sent += sent
    metrics.snapshot_bytes += snapshot
    metrics.set_occupancy(connections=players, rooms=1, players=players)
    return metrics.render().decode()


def test_parses_what_the_server_exports() -> None:
    sample = parse_metrics(
        _exported(
            [0.002] * 9 + [0.045],
            late=2,
            kicks=("replay", "replay", "fire rate"),
            sent=1000,
            snapshot=600,
            players=4,
        )
    )
    assert sample.ticks == 10 and sample.late_ticks == 2
    assert sample.tick_sum_s == pytest.approx(0.063)
    assert sample.kicks == {"replay": 2, "fire rate": 1} and sample.kicks_total == 3
    assert (sample.bytes_sent, sample.snapshot_bytes, sample.players) == (1000, 600, 4)
    assert len(sample.tick_buckets) == len(TICK_DURATION_BUCKETS_S) + 1  # + Inf
    assert math.isinf(sample.tick_buckets[-1][0]) and sample.tick_buckets[-1][1] == 10


def test_a_window_is_the_difference_of_two_samples() -> None:
    early = parse_metrics(_exported([0.002] * 5, kicks=("replay",), sent=100))
    late = parse_metrics(
        _exported([0.002] * 5 + [0.02] * 5, late=3, kicks=("replay",), sent=400, players=8)
    )
    window = late.minus(early)
    assert window.ticks == 5 and window.late_ticks == 3 and window.bytes_sent == 300
    assert window.kicks == {} and window.players == 8  # gauges stay current
    assert histogram_quantile(0.5, window.tick_buckets) == pytest.approx(0.0175, abs=0.003)


def test_no_kicks_exported_parses_as_zero_kicks() -> None:
    assert parse_metrics(_exported([0.001])).kicks_total == 0


def test_garbage_is_a_typed_error() -> None:
    with pytest.raises(MetricsUnavailable):
        parse_metrics("astranet_ticks{oops 3\n")


def test_scraping_a_closed_port_is_a_typed_error() -> None:
    with pytest.raises(MetricsUnavailable):
        scrape("http://127.0.0.1:9", timeout_s=1.0)


@settings(max_examples=300)
@given(
    counts=st.lists(st.integers(0, 50), min_size=1, max_size=len(TICK_DURATION_BUCKETS_S)),
    q1=st.floats(0, 1),
    q2=st.floats(0, 1),
)
def test_quantile_is_monotone_and_inside_the_buckets(
    counts: list[int], q1: float, q2: float
) -> None:
    bounds = [*TICK_DURATION_BUCKETS_S[: len(counts)], math.inf]
    cumulative, total = [], 0
    for count in [*counts, 0]:
        total += count
        cumulative.append(float(total))
    buckets = list(zip(bounds, cumulative, strict=True))
    low, high = sorted((q1, q2))
    if total == 0:
        assert math.isnan(histogram_quantile(low, buckets))
        return
    a, b = histogram_quantile(low, buckets), histogram_quantile(high, buckets)
    assert 0.0 <= a <= b <= bounds[-2]


def test_cpu_seconds_of_this_process_grows() -> None:
    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(2_000_000))  # burn a little CPU
    assert cpu_seconds(os.getpid()) > before >= 0.0
