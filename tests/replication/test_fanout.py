"""Fan-out: one encode per distinct base and view; bases come only from acks still in the ring."""

import numpy as np
import pytest

from astranet.errors import InvalidState
from astranet.replication.codec import decode_payload
from astranet.replication.fanout import ClientBaseline, SnapshotFanout
from astranet.replication.snapshot import SnapshotHistory
from tests.replication.helpers import SCHEMA, evolve, make_store


def _room(capacity: int = 8):
    rng = np.random.default_rng(0)
    store = make_store(rng, 40)
    history = SnapshotHistory(store, capacity=capacity)
    return store, history, SnapshotFanout(SCHEMA, history), rng


def test_clients_with_the_same_base_share_one_payload() -> None:
    store, history, fanout, rng = _room()
    clients = [ClientBaseline() for _ in range(6)]
    fanout.begin_tick(history.capture(0))
    first = [fanout.encode_for(c) for c in clients]
    assert fanout.encodes == 1 and all(f is first[0] for f in first) and first[0].base_id is None
    for c in clients[:3]:
        assert c.ack(1)
    evolve(store, rng)
    fanout.begin_tick(history.capture(1))
    out = [fanout.encode_for(c) for c in clients]
    assert fanout.encodes == 3  # base 1 shared by three, full shared by three
    assert [o.base_id for o in out] == [1, 1, 1, None, None, None]
    assert out[0] is out[2] and out[3] is out[5]


def test_ack_of_unsent_id_is_ignored_and_newest_ack_wins() -> None:
    baseline = ClientBaseline()
    assert not baseline.ack(5)
    baseline.record_sent(5, None)
    baseline.record_sent(6, None)
    assert baseline.ack(6) and baseline.ack(5)
    assert baseline.acked_id == 6
    baseline.reset()
    assert baseline.acked_id is None and not baseline.ack(6)


def test_base_older_than_the_ring_falls_back_to_full() -> None:
    store, history, fanout, rng = _room(capacity=4)
    client = ClientBaseline()
    fanout.begin_tick(history.capture(0))
    fanout.encode_for(client)
    client.ack(1)
    for tick in range(1, 4):
        evolve(store, rng)
        fanout.begin_tick(history.capture(tick))
        assert fanout.encode_for(client).base_id == 1
    evolve(store, rng)
    snap = history.capture(4)  # id 5: id 1 leaves the 4-deep ring
    fanout.begin_tick(snap)
    out = fanout.encode_for(client)
    assert out.base_id is None
    assert decode_payload(SCHEMA, out.payload, out.compressed).same_state(snap)


def test_visibility_masks_are_remembered_for_the_base() -> None:
    store, history, fanout, rng = _room()
    client = ClientBaseline()
    snap = history.capture(0)
    fanout.begin_tick(snap)
    first_mask = rng.random(len(snap)) < 0.5
    first = fanout.encode_for(client, first_mask)
    base_view = decode_payload(SCHEMA, first.payload, first.compressed)
    client.ack(first.id)
    evolve(store, rng)
    snap = history.capture(1)
    fanout.begin_tick(snap)
    mask = rng.random(len(snap)) < 0.5
    out = fanout.encode_for(client, mask)
    assert out.base_id == first.id
    decoded = decode_payload(SCHEMA, out.payload, out.compressed, base_view)
    assert decoded.same_state(snap.select(mask))
    other = ClientBaseline()
    fanout.encode_for(other, mask)
    assert fanout.encodes == 3  # same current view, different base: not shared


def test_misuse_raises_invalid_state() -> None:
    _, history, fanout, _ = _room()
    with pytest.raises(InvalidState):
        fanout.encode_for(ClientBaseline())
    fanout.begin_tick(history.capture(0))
    with pytest.raises(InvalidState):
        fanout.encode_for(ClientBaseline(), np.ones(3, dtype=bool))
