"""Snapshot ring: ids increase, old snapshots age out, captured state is frozen."""

import numpy as np
import pytest

from astranet.errors import ConfigurationError
from astranet.replication.snapshot import SnapshotHistory, capture
from tests.replication.helpers import SCHEMA, make_store


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
