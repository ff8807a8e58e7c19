"""Lag compensation: the server's rewind reproduces exactly what a client's interpolation drew."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.ecs.store import ColumnStore
from astranet.replication import ClientBaseline, Replica, SnapshotFanout, SnapshotHistory
from astranet.replication.interpolation import SnapshotBuffer
from astranet.replication.prediction import StateLayout, read_rows
from astranet.replication.rewind import (
    VIEW_FRAC_ONE,
    Rewinder,
    snap_render_time_ms,
    view_q_of,
    view_time_ms,
)
from tests.replication.helpers import SCHEMA, evolve

TICK_HZ = 30
TICK_MS = 1000.0 / TICK_HZ


def _run(seed: int, ticks: int) -> tuple[Rewinder, SnapshotBuffer]:
    """A server evolving a random world, and a client receiving every snapshot through the
    real codec into the client's SnapshotBuffer (what ClientWorld's interpolation samples)."""
    rng = np.random.default_rng(seed)
    store = ColumnStore(SCHEMA)
    history = SnapshotHistory(store)
    fanout = SnapshotFanout(SCHEMA, history)
    baseline = ClientBaseline()
    replica = Replica(SCHEMA)
    buffer = SnapshotBuffer(StateLayout.of(SCHEMA).width)
    for tick in range(ticks):
        evolve(store, rng, spawn=2, despawn=0.05)
        snap = history.capture(tick)
        fanout.begin_tick(snap)
        out = fanout.encode_for(baseline)
        replica.apply(out.id, out.base_id, out.payload, out.compressed, out.server_tick)
        baseline.ack(out.id)
        rows = read_rows(replica.store)
        buffer.push(out.server_tick * TICK_MS, replica.store.net_ids.astype(np.uint32), rows)
    return Rewinder(SCHEMA, history, TICK_HZ, max_rewind_ms=1000.0), buffer


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    ticks=st.integers(2, 40),
    back_ms=st.floats(0.0, 900.0, allow_nan=False),
)
def test_rewind_returns_exactly_what_the_client_interpolated(
    seed: int, ticks: int, back_ms: float
) -> None:
    rewinder, buffer = _run(seed, ticks)
    newest_ms = (ticks - 1) * TICK_MS
    # What ClientWorld does: render time snapped to the wire grid, then sampled.
    render_ms = snap_render_time_ms(max(0.0, newest_ms - back_ms), TICK_MS)
    drawn = buffer.sample(render_ms)
    view_q = view_q_of(render_ms, TICK_MS)
    view_tick, view_frac = divmod(view_q, VIEW_FRAC_ONE)  # what the InputFrame carries
    rewound = rewinder.rewind(view_tick + view_frac / VIEW_FRAC_ONE)
    assert not rewound.clamped
    np.testing.assert_array_equal(rewound.net_ids, drawn.net_ids)
    np.testing.assert_array_equal(rewound.values, drawn.values)  # bit for bit


def test_view_grid_round_trips() -> None:
    for render_ms in (0.0, 1.0, 33.3333, 1234567.891):
        snapped = snap_render_time_ms(render_ms, TICK_MS)
        assert abs(snapped - render_ms) <= TICK_MS / VIEW_FRAC_ONE
        assert view_time_ms(view_q_of(snapped, TICK_MS), TICK_MS) == snapped


def test_views_older_than_the_cap_are_clamped_and_future_ones_held_at_the_newest() -> None:
    rewinder, _ = _run(seed=3, ticks=64)
    rewinder.max_rewind_ms = 250.0
    newest = rewinder.history.latest
    assert newest is not None
    old = rewinder.rewind(0.0)  # two seconds back: beyond the 250 ms cap
    assert old.clamped and old.view_tick == pytest.approx(newest.tick - 250.0 / TICK_MS)
    assert rewinder.clamped == 1
    future = rewinder.rewind(newest.tick + 100.0)
    assert future.clamped and future.view_tick == newest.tick
    np.testing.assert_array_equal(future.net_ids, newest.net_ids)
    within = rewinder.rewind(newest.tick - 3.5)
    assert not within.clamped and within.view_tick == newest.tick - 3.5


def test_rewind_of_an_empty_history_is_empty() -> None:
    rewinder = Rewinder(SCHEMA, SnapshotHistory(ColumnStore(SCHEMA)), TICK_HZ)
    view = rewinder.rewind(5.0)
    assert len(view.net_ids) == 0 and view.values.shape == (0, rewinder.layout.width)
