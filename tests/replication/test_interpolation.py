"""Tests for astranet.replication.interpolation: SnapshotBuffer and InterpolationDelay."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from astranet.errors import AstranetError
from astranet.replication.interpolation import (
    MAX_BUFFERED_SNAPSHOTS,
    MAX_INTERPOLATION_DELAY_MS,
    InterpolationDelay,
    InterpolationStatus,
    InvalidSnapshotError,
    SnapshotBuffer,
)

Status = InterpolationStatus


def ids(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint32)


def rows(*values: tuple[float, ...]) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def two_snapshot_buffer(**kwargs: object) -> SnapshotBuffer:
    buffer = SnapshotBuffer(2, **kwargs)  # type: ignore[arg-type]
    buffer.push(100.0, ids(1, 2), rows((0.0, 10.0), (4.0, -4.0)))
    buffer.push(200.0, ids(1, 2), rows((2.0, 20.0), (8.0, -8.0)))
    return buffer


@pytest.mark.parametrize(
    ("render_ms", "expected"),
    [
        (100.0, [[0.0, 10.0], [4.0, -4.0]]),
        (150.0, [[1.0, 15.0], [6.0, -6.0]]),
        (200.0, [[2.0, 20.0], [8.0, -8.0]]),
    ],
)
def test_lerp_is_exact_at_zero_half_and_one(render_ms: float, expected: list[list[float]]) -> None:
    result = two_snapshot_buffer().sample(render_ms)
    assert result.status is Status.INTERPOLATING
    np.testing.assert_array_equal(result.net_ids, ids(1, 2))
    np.testing.assert_array_equal(result.values, np.array(expected, dtype=np.float32))
    assert result.values.dtype == np.float32


def test_sampling_picks_the_bracketing_pair_among_many() -> None:
    buffer = SnapshotBuffer(1)
    for i in range(10):
        buffer.push(100.0 * i, ids(7), np.array([[float(i * i)]]))
    # Between t=500 (25) and t=600 (36), a quarter of the way.
    result = buffer.sample(525.0)
    assert result.values[0, 0] == pytest.approx(25 + 0.25 * 11)


def test_entity_appearing_is_shown_at_its_first_values() -> None:
    buffer = SnapshotBuffer(1)
    buffer.push(0.0, ids(1), np.array([[0.0]]))
    buffer.push(100.0, ids(1, 5), np.array([[10.0], [77.0]]))
    result = buffer.sample(50.0)
    np.testing.assert_array_equal(result.net_ids, ids(1, 5))
    np.testing.assert_array_equal(result.values[:, 0], [5.0, 77.0])


def test_entity_disappearing_is_dropped_with_the_newer_snapshot() -> None:
    buffer = SnapshotBuffer(1)
    buffer.push(0.0, ids(1, 3, 9), np.array([[0.0], [30.0], [90.0]]))
    buffer.push(100.0, ids(3, 9), np.array([[40.0], [100.0]]))
    result = buffer.sample(50.0)
    np.testing.assert_array_equal(result.net_ids, ids(3, 9))
    np.testing.assert_array_equal(result.values[:, 0], [35.0, 95.0])


def test_before_the_oldest_snapshot_holds_it() -> None:
    result = two_snapshot_buffer().sample(10.0)
    assert result.status is Status.HOLDING_OLDEST
    np.testing.assert_array_equal(result.values, rows((0.0, 10.0), (4.0, -4.0)))


def test_empty_buffer_returns_no_entities() -> None:
    result = SnapshotBuffer(3).sample(0.0)
    assert result.status is Status.EMPTY
    assert result.net_ids.shape == (0,)
    assert result.values.shape == (0, 3)


def test_extrapolation_is_linear_then_bounded_and_held() -> None:
    buffer = two_snapshot_buffer(max_extrapolation_ms=100.0)
    result = buffer.sample(250.0)
    assert result.status is Status.EXTRAPOLATING
    np.testing.assert_allclose(result.values, [[3.0, 25.0], [10.0, -10.0]])
    at_bound = buffer.sample(300.0).values
    np.testing.assert_allclose(at_bound, [[4.0, 30.0], [12.0, -12.0]])
    far = buffer.sample(5_000.0)
    assert far.status is Status.HOLDING_NEWEST
    np.testing.assert_array_equal(far.values, at_bound)


def test_starvation_is_counted_once_per_episode() -> None:
    buffer = two_snapshot_buffer()
    assert buffer.starvations == 0
    for render_ms in (210.0, 220.0, 400.0):
        buffer.sample(render_ms)
    assert buffer.starvations == 1
    buffer.push(300.0, ids(1, 2), rows((3.0, 30.0), (9.0, -9.0)))
    buffer.sample(250.0)  # back inside the buffer: the episode ends
    assert buffer.starvations == 1
    buffer.sample(301.0)
    assert buffer.starvations == 2


def test_single_snapshot_is_held_either_side() -> None:
    buffer = SnapshotBuffer(1)
    buffer.push(100.0, ids(4), np.array([[1.5]]))
    assert buffer.sample(100.0).status is Status.INTERPOLATING
    assert buffer.sample(50.0).status is Status.HOLDING_OLDEST
    later = buffer.sample(150.0)
    assert later.status is Status.HOLDING_NEWEST
    assert later.values[0, 0] == 1.5


def test_angle_columns_take_the_shortest_arc() -> None:
    buffer = SnapshotBuffer(2, angle_columns=np.array([False, True]))
    buffer.push(0.0, ids(1), np.array([[3.0, 3.0]]))
    buffer.push(100.0, ids(1), np.array([[-3.0, -3.0]]))
    values = buffer.sample(50.0).values
    assert values[0, 0] == pytest.approx(0.0)  # a plain column goes the long way
    # 3.0 -> -3.0 crosses +-pi: halfway is pi, reported wrapped as -pi.
    assert values[0, 1] == pytest.approx(-math.pi)
    quarter = buffer.sample(25.0).values[0, 1]
    assert quarter == pytest.approx(3.0 + 0.25 * (2 * math.pi - 6.0))


def test_stale_or_duplicate_snapshots_are_ignored() -> None:
    buffer = two_snapshot_buffer()
    assert not buffer.push(200.0, ids(1), rows((9.0, 9.0)))
    assert not buffer.push(150.0, ids(1), rows((9.0, 9.0)))
    assert len(buffer) == 2


def test_buffer_is_a_bounded_ring() -> None:
    buffer = SnapshotBuffer(1)
    for i in range(MAX_BUFFERED_SNAPSHOTS + 10):
        buffer.push(float(i), ids(1), np.array([[float(i)]]))
    assert len(buffer) == MAX_BUFFERED_SNAPSHOTS
    assert buffer.sample(0.0).status is Status.HOLDING_OLDEST
    assert buffer.sample(0.0).values[0, 0] == 10.0


def test_push_copies_its_inputs() -> None:
    buffer = SnapshotBuffer(1)
    values = np.array([[1.0]])
    buffer.push(0.0, ids(1), values)
    values[0, 0] = 99.0
    assert buffer.sample(0.0).values[0, 0] == 1.0


@pytest.mark.parametrize(
    ("net_ids", "values"),
    [
        (np.array([2, 1], dtype=np.uint32), np.zeros((2, 2))),  # unsorted
        (np.array([1, 1], dtype=np.uint32), np.zeros((2, 2))),  # duplicate
        (np.array([1, 2], dtype=np.int64), np.zeros((2, 2))),  # wrong id dtype
        (np.array([1, 2], dtype=np.uint32), np.zeros((2, 3))),  # wrong width
        (np.array([1, 2], dtype=np.uint32), np.zeros((3, 2))),  # wrong row count
        (np.array([1, 2], dtype=np.uint32), np.zeros((2, 2), dtype=np.int32)),  # not float
        (np.array([1, 2], dtype=np.uint32), np.full((2, 2), np.nan)),  # not finite
        (np.array([[1, 2]], dtype=np.uint32), np.zeros((2, 2))),  # ids not 1-D
    ],
)
def test_bad_arrays_raise_invalid_snapshot_error(net_ids: np.ndarray, values: np.ndarray) -> None:
    with pytest.raises(InvalidSnapshotError) as excinfo:
        SnapshotBuffer(2).push(0.0, net_ids, values)
    assert isinstance(excinfo.value, AstranetError)


def test_bad_angle_mask_raises() -> None:
    with pytest.raises(InvalidSnapshotError):
        SnapshotBuffer(2, angle_columns=[True])


@st.composite
def snapshot_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    width = draw(st.integers(1, 4))
    id_pool = st.sets(st.integers(0, 2**32 - 1), max_size=20)
    older_ids = np.array(sorted(draw(id_pool)), dtype=np.uint32)
    newer_ids = np.array(sorted(draw(id_pool) | set(older_ids[:3].tolist())), dtype=np.uint32)
    finite = st.floats(-1e6, 1e6, width=32)
    older_values = draw(hnp.arrays(np.float32, (older_ids.size, width), elements=finite))
    newer_values = draw(hnp.arrays(np.float32, (newer_ids.size, width), elements=finite))
    return older_ids, older_values, newer_ids, newer_values


@settings(max_examples=500)
@given(pair=snapshot_pairs(), fraction=st.floats(0.0, 1.0))
def test_interpolated_values_lie_between_the_bracketing_snapshots(
    pair: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], fraction: float
) -> None:
    older_ids, older_values, newer_ids, newer_values = pair
    buffer = SnapshotBuffer(older_values.shape[1])
    buffer.push(1000.0, older_ids, older_values)
    buffer.push(1033.0, newer_ids, newer_values)
    result = buffer.sample(1000.0 + 33.0 * fraction)
    assert result.status is Status.INTERPOLATING
    np.testing.assert_array_equal(result.net_ids, newer_ids)
    # For each shown entity, the bounds are its old and new values (new only if it spawned).
    older_rows = np.searchsorted(older_ids, newer_ids)
    older_rows = np.minimum(older_rows, max(older_ids.size - 1, 0))
    in_both = older_ids.size > 0 and older_ids[older_rows] == newer_ids
    start = np.where(
        np.atleast_1d(in_both)[:, None],
        older_values[older_rows] if older_ids.size else newer_values,
        newer_values,
    ).astype(np.float64)
    end = newer_values.astype(np.float64)
    tolerance = 1e-6 * np.maximum(np.abs(start), np.abs(end)) + 1e-6
    assert np.all(result.values >= np.minimum(start, end) - tolerance)
    assert np.all(result.values <= np.maximum(start, end) + tolerance)


def test_delay_starts_at_two_intervals_and_stays_there_without_jitter() -> None:
    delay = InterpolationDelay(nominal_interval_ms=1000 / 30)
    assert delay.delay_ms == pytest.approx(2000 / 30)
    for i in range(100):
        delay.on_snapshot_arrival(5_000.0 + i * 1000 / 30, i * 1000 / 30)
    assert delay.delay_ms == pytest.approx(2000 / 30)
    assert delay.jitter_ms == pytest.approx(0.0, abs=1e-9)
    assert delay.render_time_ms(10_000.0) == pytest.approx(10_000.0 - 2000 / 30)


def test_delay_adapts_upward_with_jitter_smoothly_and_is_bounded() -> None:
    rng = random.Random(3)
    interval = 1000 / 30
    delay = InterpolationDelay(nominal_interval_ms=interval)
    previous = delay.delay_ms
    for i in range(200):
        late_ms = rng.uniform(0, 120)
        current = delay.on_snapshot_arrival(i * interval + 50 + late_ms, i * interval)
        assert current - previous < 40  # smoothed: no jump to the target on one snapshot
        assert delay.default_delay_ms <= current <= MAX_INTERPOLATION_DELAY_MS
        previous = current
    assert delay.jitter_ms > 20
    assert delay.delay_ms > interval + 2 * 20


def test_delay_relaxes_slowly_but_never_below_default() -> None:
    rng = random.Random(4)
    interval = 50.0
    delay = InterpolationDelay(nominal_interval_ms=interval)
    for i in range(100):
        delay.on_snapshot_arrival(i * interval + rng.uniform(0, 200), i * interval)
    raised = delay.delay_ms
    for i in range(100, 102):
        delay.on_snapshot_arrival(i * interval + 20.0, i * interval)
    assert delay.delay_ms > 0.8 * raised  # two calm snapshots barely lower it
    for i in range(102, 2000):
        delay.on_snapshot_arrival(i * interval + 20.0, i * interval)
        assert delay.delay_ms >= delay.default_delay_ms
    assert delay.delay_ms == pytest.approx(delay.default_delay_ms, rel=0.01)


def test_delay_ignores_out_of_order_and_non_finite_arrivals() -> None:
    delay = InterpolationDelay(nominal_interval_ms=33.0)
    delay.on_snapshot_arrival(0.0, 100.0)
    before = delay.delay_ms
    assert delay.on_snapshot_arrival(500.0, 50.0) == before
    assert delay.on_snapshot_arrival(float("nan"), 200.0) == before
    assert delay.jitter_ms == 0.0


def test_delay_rejects_impossible_configuration() -> None:
    with pytest.raises(InvalidSnapshotError):
        InterpolationDelay(nominal_interval_ms=0.0)
    with pytest.raises(InvalidSnapshotError):
        InterpolationDelay(nominal_interval_ms=400.0)  # 2 intervals above the 500 ms cap
