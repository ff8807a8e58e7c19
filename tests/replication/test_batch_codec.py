"""Batched payload encoding: byte for byte what encode_delta gives, client by client."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.replication._bits import pack_bits
from astranet.replication.batch_codec import encode_deltas, pack_runs
from astranet.replication.codec import encode_delta
from astranet.replication.snapshot import SnapshotHistory
from tests.replication.helpers import SCHEMA, evolve, make_store


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 120),
    ticks=st.integers(1, 6),
    clients=st.integers(1, 6),
    change=st.sampled_from([0.02, 0.2, 1.0]),  # row lists, masks, every field changed
)
def test_batched_payloads_equal_one_encode_per_client(
    seed: int, n: int, ticks: int, clients: int, change: float
) -> None:
    rng = np.random.default_rng(seed)
    store = make_store(rng, n)
    history = SnapshotHistory(store, capacity=ticks + 1)
    snaps = [history.capture(0)]
    for tick in range(1, ticks):
        evolve(store, rng, change=change)
        snaps.append(history.capture(tick))
    currents, bases = [], []
    for _ in range(clients):  # each client its own view of "now" and its own base (or none)
        cur = snaps[-1].select(rng.random(len(snaps[-1])) < 0.7)
        pick = int(rng.integers(-1, len(snaps)))
        base = None if pick < 0 else snaps[pick].select(rng.random(len(snaps[pick])) < 0.7)
        currents.append(cur)
        bases.append(base)
    batched = encode_deltas(SCHEMA, currents, bases)
    assert batched == [encode_delta(SCHEMA, c, b) for c, b in zip(currents, bases, strict=True)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 32), st.integers(0, 40)), max_size=8), st.data())
def test_pack_runs_equals_pack_bits_run_by_run(runs: list[tuple[int, int]], data) -> None:
    widths = np.array([w for w, _ in runs], dtype=np.int64)
    values, owner, expected = [], [], b""
    for r, (width, count) in enumerate(runs):
        top = (1 << width) - 1
        run = np.array(
            data.draw(st.lists(st.integers(0, top), min_size=count, max_size=count)),
            dtype=np.uint32,
        )
        values.append(run)
        owner.append(np.full(count, r, dtype=np.int64))
        expected += pack_bits(run, width)
    flat = np.concatenate(values) if values else np.zeros(0, np.uint32)
    owners = np.concatenate(owner) if owner else np.zeros(0, np.int64)
    packed, offsets = pack_runs(flat, owners, widths)
    assert packed.tobytes() == expected
    assert offsets[-1] == len(expected)
