"""Many rooms' small deltas at once: byte for byte what encode_delta gives, room by room."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.examples.cubes import Cubes
from astranet.replication.codec import FLAG_ALL_FIELDS, encode_delta
from astranet.replication.rooms_codec import encode_same_rows
from astranet.replication.snapshot import SnapshotHistory
from tests.replication.helpers import SCHEMA, evolve, make_store


def _room(rng: np.random.Generator, n: int, ticks: int, change: float, structure: bool):
    store = make_store(rng, n)
    history = SnapshotHistory(store, capacity=ticks + 1)
    snaps = [history.capture(0)]
    for tick in range(1, ticks):
        if structure and rng.random() < 0.5:
            evolve(store, rng, change=change)
        else:
            evolve(store, rng, change=change, spawn=0, despawn=0.0)
        snaps.append(history.capture(tick))
    return snaps


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rooms=st.integers(1, 8),
    n=st.integers(0, 150),
    ticks=st.integers(2, 5),
    change=st.sampled_from([0.0, 0.02, 0.1, 0.5]),  # nothing, row lists, masks, many rows
    structure=st.booleans(),
    views=st.booleans(),
    max_updates=st.sampled_from([0, 8, 64, 10_000]),
)
def test_every_pair_in_scope_equals_encode_delta(
    seed: int,
    rooms: int,
    n: int,
    ticks: int,
    change: float,
    structure: bool,
    views: bool,
    max_updates: int,
) -> None:
    rng = np.random.default_rng(seed)
    currents, bases = [], []
    for _ in range(rooms):
        snaps = _room(rng, int(rng.integers(0, n + 1)), ticks, change, structure)
        cur, base = snaps[-1], snaps[int(rng.integers(0, len(snaps)))]
        if views:  # the same mask on both sides keeps the rows equal; a random one may not
            keep = rng.random(len(cur)) < 0.7
            cur = cur.select(keep)
            if len(base) == len(keep) and rng.random() < 0.7:
                base = base.select(keep)
        currents.append(cur)
        bases.append(base)
    batched = encode_same_rows(SCHEMA, currents, bases, max_updates=max_updates)
    for cur, base, raw in zip(currents, bases, batched, strict=True):
        same_rows = np.array_equal(cur.net_ids, base.net_ids)
        if raw is None:  # out of scope: rows differ or too many changed
            assert not same_rows or max_updates < len(cur)
        else:
            assert same_rows
            assert raw == encode_delta(SCHEMA, cur, base)


def test_cubes_rooms_steady_state_is_all_in_scope() -> None:
    """The capacity scenario (cubes N=100, 10 % moving): every room's delta takes this path."""
    from astranet.server.room import Room

    game = Cubes(100, 0.1)
    rooms = [Room(f"RC{r}", "test", "cubes", game) for r in range(5)]
    try:
        for tick in range(1, 5):
            for room in rooms:
                room.step(tick)
        currents = [room.history.latest for room in rooms]
        bases = [room.history.get(room.history.latest.id - 2) for room in rooms]
        batched = encode_same_rows(game.schema, currents, bases)
        one_by_one = [encode_delta(game.schema, c, b) for c, b in zip(currents, bases, strict=True)]
        assert batched == one_by_one
    finally:
        for room in rooms:
            room.close()


def test_no_pairs_and_unchanged_pairs() -> None:
    rng = np.random.default_rng(3)
    snaps = _room(rng, 10, 2, 0.0, False)
    assert encode_same_rows(SCHEMA, [], []) == []
    same = snaps[-1]
    assert encode_same_rows(SCHEMA, [same], [same]) == [encode_delta(SCHEMA, same, same)]


def test_rows_that_changed_in_every_field_need_no_field_masks() -> None:
    from tests.replication.helpers import randomize_rows

    rng = np.random.default_rng(5)
    stores = [make_store(rng, 40) for _ in range(4)]
    histories = [SnapshotHistory(store) for store in stores]
    bases = [history.capture(0) for history in histories]
    rows = np.array([3, 17, 30])
    for store, base in zip(stores, bases, strict=True):
        randomize_rows(store, rows, rng)
        store["Body.on"][rows] = ~np.asarray(base.codes[4][rows, 0], dtype=bool)  # flipped too
    currents = [history.capture(1) for history in histories]
    batched = encode_same_rows(SCHEMA, currents, bases)
    assert batched == [encode_delta(SCHEMA, c, b) for c, b in zip(currents, bases, strict=True)]
    assert all(raw is not None and raw[1] & FLAG_ALL_FIELDS for raw in batched)
