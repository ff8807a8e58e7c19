"""Snapshot ring: ids increase, old snapshots age out, captured state is frozen."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.ecs import ColumnStore, Quantized, Schema, replicated
from astranet.errors import ConfigurationError
from astranet.replication.snapshot import PARTIAL_MIN_ROWS, SnapshotHistory, capture
from tests.replication.helpers import SCHEMA, evolve, make_store


def test_ring_keeps_the_last_capacity_snapshots() -> None:
    store = make_store(np.random.default_rng(0), 5)
    history = SnapshotHistory(store, capacity=3)
    snaps = [history.capture(tick) for tick in range(5)]
    assert [s.id for s in snaps] == [1, 2, 3, 4, 5]
    assert history.get(2) is None and history.get(3) is snaps[2] and history.get(None) is None
    assert len(history) == 3 and history.latest is snaps[-1] and 5 in history
    assert store.clock == 5  # captures drive the net-id quarantine
    with pytest.raises(ConfigurationError):
        SnapshotHistory(store, capacity=0)


def test_captured_state_is_quantized_and_frozen() -> None:
    store = make_store(np.random.default_rng(1), 4)
    snap = capture(store, 1, 0)
    store["Body.pos"][:] += 50
    assert not snap.same_state(capture(store, 2, 0))
    assert snap.net_ids.tolist() == store.net_ids.tolist()
    with pytest.raises(ValueError):
        snap.codes[0][0, 0] = 1
    # Dequantized values re-quantize to the same codes (the state is a fixed point).
    values = snap.dequantize(SCHEMA)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(SCHEMA.quantize(values), snap.codes, strict=True)
        if a.shape[1] != 4
    )  # quaternions: see test_quantize for the tie caveat


def test_select_and_checksum() -> None:
    snap = capture(make_store(np.random.default_rng(2), 6), 1, 0)
    visible = np.array([True, False, True, False, False, True])
    view = snap.select(visible)
    assert view.net_ids.tolist() == snap.net_ids[visible].tolist()
    assert snap.select(None) is snap
    assert view.checksum() != snap.checksum()


@pytest.mark.parametrize("rows", [5, PARTIAL_MIN_ROWS + 40])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), change=st.sampled_from([0.0, 0.05, 0.3, 1.0]))
def test_incremental_capture_equals_a_fresh_capture(rows: int, seed: int, change: float) -> None:
    rng = np.random.default_rng(seed)
    store = make_store(rng, rows)
    history = SnapshotHistory(store)
    for tick in range(6):
        snap = history.capture(tick)
        assert snap.same_state(capture(store, 0, tick))
        assert all(not c.flags.writeable for c in (snap.net_ids, *snap.codes))
        evolve(store, rng, change=change, spawn=int(rng.integers(0, 3)), despawn=0.05 * (tick % 2))


def test_an_unchanged_column_reuses_the_previous_codes_object() -> None:
    store = make_store(np.random.default_rng(3), 8)
    history = SnapshotHistory(store)
    first = history.capture(0)
    store["Body.pos"][2] += 1.0
    second = history.capture(1)
    moved = SCHEMA.index("Body.pos")
    assert second.net_ids is first.net_ids
    assert second.codes[moved] is not first.codes[moved]
    assert all(second.codes[f] is first.codes[f] for f in range(len(SCHEMA)) if f != moved)
    store.spawn(1)
    assert history.capture(2).net_ids is not second.net_ids


def test_capture_sees_every_structural_change_and_reuses_ids_when_they_cancel() -> None:
    # Capture trusts ColumnStore.generation for "same rows" and compares ids only after a
    # structural change: a spawn undone by a despawn keeps the same ids (and the same array).
    store = make_store(np.random.default_rng(4), 6)
    history = SnapshotHistory(store)
    first = history.capture(0)
    (extra,) = store.spawn(1).tolist()
    store.despawn([extra])
    second = history.capture(1)
    assert second.net_ids is first.net_ids and second.same_state(first)
    store.despawn(store.net_ids[:1])
    third = history.capture(2)
    assert third.net_ids.tolist() == store.net_ids.tolist() == first.net_ids[1:].tolist()
    assert third.same_state(capture(store, 0, 2))
    other = make_store(np.random.default_rng(5), 6)  # another store at the same generation
    history.store = other
    assert history.capture(3).same_state(capture(other, 0, 3))


@replicated
class Gauges:
    # Several Quantized fields (code dtypes u8, u16, u32; sizes 1 and 2): capture quantizes
    # the changed ones together in one float64 pass, which must equal each field's own.
    level = Quantized(0.0, 15.0, 1.0)
    where = Quantized(-64.0, 64.0 - 1 / 64, 1 / 64, size=2)
    total = Quantized(0.0, float((1 << 20) - 1), 1.0)
    tilt = Quantized(-1.0, 1.0, 1 / 1024, size=2)


GAUGES = Schema(Gauges)
_ODD = np.array([np.nan, np.inf, -np.inf, -0.0, 1e30, -1e30, 0.5, 1.5, 2.5])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_changed_quantized_fields_quantized_together_equal_each_alone(seed: int) -> None:
    rng = np.random.default_rng(seed)
    store = ColumnStore(GAUGES)
    store.spawn(int(rng.integers(1, 40)))
    history = SnapshotHistory(store)
    for tick in range(6):
        for field in GAUGES.fields:
            if rng.random() < 0.6:  # a random subset of the fields changes this tick
                column = store[field.name]
                values = rng.uniform(-2e6, 2e6, column.shape) * 10.0 ** -rng.integers(0, 7)
                odd = rng.random(column.shape) < 0.2
                values[odd] = rng.choice(_ODD, int(odd.sum()))
                column[...] = values
        snap = history.capture(tick)
        fresh = capture(store, 0, tick)
        assert snap.same_state(fresh)
        assert [c.dtype for c in snap.codes] == [c.dtype for c in fresh.codes]
        if rng.random() < 0.5:
            store.spawn(1)
