"""Client replica over a lossy link: every applied snapshot equals the server's, exactly."""

import uuid
from collections import deque

import esper
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.ecs.world import EntityMirror, NetEntity
from astranet.errors import SnapshotDecodeError
from astranet.replication.fanout import ClientBaseline, SnapshotFanout
from astranet.replication.replica import Replica
from astranet.replication.snapshot import SnapshotHistory
from tests.replication.helpers import SCHEMA, evolve, make_store


def _run_session(
    seed: int,
    ticks: int,
    loss: float,
    ack_delay: int,
    n_clients: int,
    ring: int = 16,
    interest: bool = False,
) -> tuple[int, int]:
    """Server + clients; returns (snapshots applied, full snapshots sent)."""
    rng = np.random.default_rng(seed)
    store = make_store(rng, 30)
    history = SnapshotHistory(store, capacity=ring)
    fanout = SnapshotFanout(SCHEMA, history, checksum=True)
    clients = [
        (ClientBaseline(ring), Replica(SCHEMA, keep=ring), deque()) for _ in range(n_clients)
    ]
    applied = fulls = 0
    for tick in range(ticks):
        evolve(store, rng)
        snap = history.capture(tick)
        fanout.begin_tick(snap)
        for baseline, replica, acks in clients:
            visible = (rng.random(len(snap)) < 0.7) if interest else None
            out = fanout.encode_for(baseline, visible)
            fulls += out.base_id is None
            if rng.random() >= loss:  # delivered
                update = replica.apply(out.id, out.base_id, out.payload, out.compressed, tick)
                assert update.is_latest
                assert update.snapshot.same_state(snap.select(visible))
                assert np.array_equal(replica.store.net_ids, snap.select(visible).net_ids)
                applied += 1
                if rng.random() >= loss:  # the ack can be lost too
                    acks.append((tick + ack_delay, out.id))
            while acks and acks[0][0] <= tick:
                baseline.ack(acks.popleft()[1])
    return applied, fulls


@settings(max_examples=40)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 0.5), st.integers(0, 6), st.booleans())
def test_lossy_sessions_stay_exact(seed, loss, ack_delay, interest) -> None:
    applied, _ = _run_session(
        seed, ticks=25, loss=loss, ack_delay=ack_delay, n_clients=3, interest=interest
    )
    assert applied > 0 or loss > 0


def test_acks_slower_than_the_ring_get_full_snapshots() -> None:
    _, fulls = _run_session(1, ticks=30, loss=0.0, ack_delay=20, n_clients=1, ring=8)
    assert fulls == 30  # every ack arrives after its snapshot left the ring


def test_lost_and_reordered_snapshots_do_not_roll_back() -> None:
    rng = np.random.default_rng(3)
    store = make_store(rng, 10)
    history = SnapshotHistory(store)
    fanout = SnapshotFanout(SCHEMA, history)
    baseline, replica = ClientBaseline(), Replica(SCHEMA)
    sent = []
    for tick in range(3):
        evolve(store, rng)
        fanout.begin_tick(history.capture(tick))
        sent.append(fanout.encode_for(baseline))
    newest = replica.apply(sent[2].id, None, sent[2].payload, sent[2].compressed)
    late = replica.apply(sent[0].id, None, sent[0].payload, sent[0].compressed)
    assert newest.is_latest and not late.is_latest
    assert replica.latest is newest.snapshot and replica.base(sent[0].id) is late.snapshot
    with pytest.raises(SnapshotDecodeError, match="unknown base"):
        replica.apply(9, 2, sent[1].payload, sent[1].compressed)
    with pytest.raises(SnapshotDecodeError):
        replica.apply(10, None, b"\x01garbage", False)
    assert replica.latest is newest.snapshot  # failures change nothing


def test_replica_drives_esper_mirror() -> None:
    world = uuid.uuid4().hex
    previous = esper.current_world
    esper.switch_world(world)
    try:
        rng = np.random.default_rng(4)
        store = make_store(rng, 5)
        history = SnapshotHistory(store)
        fanout = SnapshotFanout(SCHEMA, history)
        baseline, mirror = ClientBaseline(), EntityMirror()
        replica = Replica(SCHEMA, mirror=mirror)
        for tick in range(6):
            evolve(store, rng, despawn=0.3, spawn=2)
            fanout.begin_tick(history.capture(tick))
            out = fanout.encode_for(baseline)
            replica.apply(out.id, out.base_id, out.payload, out.compressed)
            baseline.ack(out.id)
            tagged = sorted(c.net_id for _, c in esper.get_component(NetEntity))
            assert tagged == store.net_ids.tolist() == sorted(mirror.entity_of)
    finally:
        esper.switch_world(previous)
        esper.delete_world(world)
