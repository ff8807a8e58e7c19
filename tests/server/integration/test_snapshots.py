"""WIRE rule 4 (snapshots) over real sockets: ids, ticks, bases, never-ackers, last_input_seq."""

from __future__ import annotations

import numpy as np
import pytest

from astranet.examples.dots import SPEED, WANDERERS, encode_input, game

from .conftest import DecodedView, Running

pytestmark = pytest.mark.timeout(20)

SNAPSHOTS = 45  # 1.5 s at 30 Hz: enough for deltas against several acked bases


async def test_acking_client_sees_increasing_ids_and_acked_bases(running: Running) -> None:
    client = await running.joined_client()
    view = DecodedView(game.schema)
    acked: set[int] = set()
    last_id, last_tick, deltas = -1, -1, 0
    for _ in range(SNAPSHOTS):
        snapshot = await client.next_snapshot()
        assert snapshot.id > last_id
        assert snapshot.server_tick >= last_tick
        assert snapshot.base_id is None or snapshot.base_id in acked
        deltas += snapshot.base_id is not None
        view.apply(snapshot)  # decodes against the acked base, or raises
        last_id, last_tick = snapshot.id, snapshot.server_tick
        await client.ack(snapshot.id)
        acked.add(snapshot.id)
    assert deltas > SNAPSHOTS // 2  # acking actually buys deltas
    assert len(view.replica.store) == WANDERERS + 1


async def test_client_that_never_acks_gets_correct_full_snapshots(running: Running) -> None:
    lazy = await running.joined_client()
    acking = await running.joined_client()  # same room: its deltas must not leak to `lazy`
    assert lazy.joined.room_id == acking.joined.room_id  # type: ignore[union-attr]
    lazy_view, acking_view = DecodedView(game.schema), DecodedView(game.schema)
    lazy_states: dict[int, np.ndarray] = {}
    acking_states: dict[int, np.ndarray] = {}
    for _ in range(20):
        snapshot = await lazy.next_snapshot()
        assert snapshot.base_id is None
        lazy_view.apply(snapshot)
        lazy_states[snapshot.server_tick] = lazy_view.replica.store["Body.pos"].copy()
        ack_me = await acking.next_snapshot()
        acking_view.apply(ack_me)
        acking_states[ack_me.server_tick] = acking_view.replica.store["Body.pos"].copy()
        await acking.ack(ack_me.id)
    # Full snapshots decode to exactly the state the acking client rebuilt from deltas.
    common = set(lazy_states) & set(acking_states)
    assert len(common) >= 10
    for tick in common:
        assert np.array_equal(lazy_states[tick], acking_states[tick])
    room = running.server.rooms[lazy.joined.room_id]  # type: ignore[union-attr]
    assert len(lazy_view.replica.store) == WANDERERS + 2
    assert set(lazy_view.replica.store.net_ids.tolist()) == set(room.store.net_ids.tolist())


async def test_last_input_seq_is_the_highest_applied_seq(running: Running) -> None:
    client = await running.joined_client()
    sent = [3, 4, 9, 10, 200]  # gaps are allowed
    for seq in sent:
        await client.send_input(encode_input(0.0, 1.0), seq=seq)
    seen: list[int] = []
    while not seen or seen[-1] != sent[-1]:
        snapshot = await client.next_snapshot()
        if snapshot.last_input_seq is not None:
            seen.append(snapshot.last_input_seq)
    assert all(seq in sent for seq in seen)
    assert seen == sorted(seen)  # never goes back


async def test_avatar_moves_by_one_step_per_applied_input(running: Running) -> None:
    client = await running.joined_client()
    net_id = client.joined.entity  # type: ignore[union-attr]
    view = DecodedView(game.schema)
    view.apply(await client.next_snapshot())
    start = view.position(net_id)
    # 6 frames in one burst: within MAX_QUEUED_INPUTS (8), so none is dropped.
    for _ in range(6):
        last = await client.send_input(encode_input(0.0, -1.0))
    snapshot = await client.snapshot_where(lambda s: s.last_input_seq == last.seq)
    view.apply(snapshot)
    moved = view.position(net_id) - start
    assert moved[0] == 0.0
    assert moved[1] == pytest.approx(-6 * SPEED / 30, abs=1e-2)
    assert np.isfinite(moved).all()
