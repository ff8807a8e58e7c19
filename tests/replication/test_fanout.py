"""Fan-out: one encode per distinct base and view; bases come only from acks still in the ring,
and clients whose acks differ by a snapshot or two share one base."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.errors import InvalidState
from astranet.replication.codec import decode_payload
from astranet.replication.fanout import (
    MAX_SHARED_BASE_LAG,
    PREDICTED_DELTAS_ENV,
    ClientBaseline,
    SnapshotFanout,
)
from astranet.replication.replica import Replica
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


def _ack_ids(fanout: SnapshotFanout, client: ClientBaseline, ids: list[int]) -> None:
    for snapshot_id in ids:
        assert client.ack(snapshot_id)


def _ticks(store, history, fanout, rng, clients, count):
    """``count`` ticks of encode_for to every client (newest acks, no sharing)."""
    sent = []
    for _ in range(count):
        evolve(store, rng)
        fanout.begin_tick(history.capture(len(history)))
        sent.append([fanout.encode_for(c) for c in clients])
    return sent


def test_clients_a_snapshot_or_two_apart_share_one_base() -> None:
    store, history, fanout, rng = _room()
    clients = [ClientBaseline() for _ in range(4)]
    _ticks(store, history, fanout, rng, clients, 4)  # ids 1..4 sent to everyone
    for client, acked in zip(clients, ([3, 4], [3], [4], [3, 4]), strict=True):
        _ack_ids(fanout, client, acked)
    assert fanout.shared_bases(clients) == [4, 3, 4, 4]  # 3 and 4 have three votes: the newer
    for client, acked in zip(clients, ([], [], [3], []), strict=True):
        _ack_ids(fanout, client, acked)
    assert fanout.shared_bases(clients) == [3, 3, 3, 3]  # everybody acked 3
    evolve(store, rng)
    snap = history.capture(5)
    fanout.begin_tick(snap)
    before = fanout.encodes
    out = [fanout.encode_for(c, None, base) for c, base in zip(clients, [3] * 4, strict=True)]
    assert fanout.encodes == before + 1 and all(o is out[0] for o in out)
    assert out[0].base_id == 3


def test_shared_bases_fast_path_and_limits() -> None:
    store, history, fanout, rng = _room(capacity=8)
    assert fanout.shared_bases([]) == []
    clients = [ClientBaseline() for _ in range(3)]
    _ticks(store, history, fanout, rng, clients, 8)  # ids 1..8
    assert fanout.shared_bases(clients) == [None, None, None]  # nobody acked: full for all
    _ack_ids(fanout, clients[0], [1, 2, 3, 4, 5, 6, 7, 8])
    _ack_ids(fanout, clients[1], [5, 8])
    _ack_ids(fanout, clients[2], [4, 5])
    # 8 - MAX_SHARED_BASE_LAG = 6 > 5: the first two share 8, the third keeps its own 5.
    assert MAX_SHARED_BASE_LAG == 2
    assert fanout.shared_bases(clients) == [8, 8, 5]
    # A base that left the ring is never chosen (ring of 8: ids 3..10 after two more ticks).
    _ticks(store, history, fanout, rng, [], 2)
    assert fanout.shared_bases([clients[2]]) == [5]
    assert fanout.shared_bases([clients[2], clients[0]]) == [5, 8]


def test_encode_for_ignores_a_base_the_client_did_not_ack() -> None:
    store, history, fanout, rng = _room()
    client = ClientBaseline()
    _ticks(store, history, fanout, rng, [client], 3)
    _ack_ids(fanout, client, [2])
    evolve(store, rng)
    fanout.begin_tick(history.capture(3))
    assert fanout.encode_for(client, None, 3).base_id == 2  # 3 was sent, never acked


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_shared_bases_always_decode_on_every_client(data: st.DataObject) -> None:
    """Random loss and ack patterns: every payload decodes on its client to the server state,
    its base is an id that client acked, and never more encodes than clients."""
    store, history, fanout, rng = _room(capacity=6)
    n = data.draw(st.integers(1, 5), label="clients")
    clients = [ClientBaseline(capacity=6) for _ in range(n)]
    replicas = [Replica(SCHEMA, keep=6) for _ in range(n)]
    received: list[list[int]] = [[] for _ in range(n)]
    for tick in range(data.draw(st.integers(1, 12), label="ticks")):
        evolve(store, rng)
        snap = history.capture(tick)
        fanout.begin_tick(snap)
        before = fanout.encodes
        bases = fanout.shared_bases(clients)
        for i, (client, base) in enumerate(zip(clients, bases, strict=True)):
            out = fanout.encode_for(client, None, base)
            assert out.base_id is None or client.acked(out.base_id)
            if data.draw(st.booleans(), label="lost"):
                continue  # never received: the client cannot ack it
            update = replicas[i].apply(out.id, out.base_id, out.payload, out.compressed)
            assert update.snapshot.same_state(snap)
            received[i].append(out.id)
        assert fanout.encodes - before <= n
        for i, client in enumerate(clients):
            if received[i] and data.draw(st.booleans(), label="acks"):
                client.ack(data.draw(st.sampled_from(received[i][-4:]), label="ack id"))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_predicted_deltas_decode_in_a_replica_and_never_cost_more(seed, ack_rate) -> None:
    """Steady movers, some acks lost: predicted payloads name only acked, kept snapshots."""
    rng = np.random.default_rng(seed)
    store = make_store(rng, 30)
    velocity = rng.normal(0, 0.2, (30, 3))
    history = SnapshotHistory(store)
    # Uncompressed, so sizes compare exactly (LZ4 could favour either form).
    predicted = SnapshotFanout(SCHEMA, history, predict=True, compress=False)
    plain = SnapshotFanout(SCHEMA, history, predict=False, compress=False)
    client, twin = ClientBaseline(), ClientBaseline()
    replica = Replica(SCHEMA)
    used = streak = longest = 0  # streak: snapshots in a row where only the movers moved
    for tick in range(0, 40, 2):
        moved = len(store) == 30  # after a spawn or despawn the movers stop
        if moved:
            store["Body.pos"][:] += velocity
        evolved = rng.random() < 0.1
        if evolved:
            evolve(store, rng, change=0.1, spawn=1, despawn=0.05)
        streak = streak + 1 if moved and not evolved else 0
        longest = max(longest, streak)
        snapshot = history.capture(tick)
        predicted.begin_tick(snapshot)
        plain.begin_tick(snapshot)
        out = predicted.encode_for(client)
        same = plain.encode_for(twin)
        assert out.base_id == same.base_id and len(out.payload) <= len(same.payload)
        used += bool(out.base_id and out.payload[1] & 0x20)
        update = replica.apply(out.id, out.base_id, out.payload, out.compressed, out.server_tick)
        assert update.snapshot.same_state(snapshot)
        if rng.random() < ack_rate:
            client.ack(out.id)
            twin.ack(out.id)
    if ack_rate == 1.0 and longest >= 3:
        assert used  # every ack arrived and two acked snapshots of steady movers came first


def test_predicted_deltas_follow_the_environment_by_default(monkeypatch) -> None:
    _, history, fanout, _ = _room()
    assert not fanout.predict
    monkeypatch.setenv(PREDICTED_DELTAS_ENV, "1")
    assert SnapshotFanout(SCHEMA, history).predict
    assert not SnapshotFanout(SCHEMA, history, predict=False).predict
