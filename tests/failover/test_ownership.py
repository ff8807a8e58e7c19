"""Room ownership on a real redis-server: claims, redirects, fencing, the epoch heartbeat."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from astranet.storage.base import Checkpoint, FencedOut, RoomRecord

pytestmark = pytest.mark.timeout(60)

# Concurrent claims repeated in the suite; the 50-run goal is checked by benchmarks/failover.py.
RACES = 20


def _room(room_id: str = "Room0001") -> RoomRecord:
    return RoomRecord(room_id, "us-east", "coop", 4, 100.0)


def _checkpoint(tick: int, room_id: str = "Room0001") -> Checkpoint:
    return Checkpoint(room_id, tick, 1.0, {"x": np.full(4, tick, "<i8")})


async def _kill(node) -> None:
    """What the cluster sees when a node dies: its lease is gone."""
    await node.directory.client.delete(f"{node.directory.namespace}:node:{node.node_id}")


async def test_a_live_owner_is_redirected_to(node) -> None:
    a, b = await node("node-a"), await node("node-b")
    a.store.save_room(_room())
    claim = await b.ownership.claim("Room0001")
    assert (claim.kind, claim.node, claim.url) == ("elsewhere", "node-a", a.directory.url)
    assert b.ownership.fence.epoch_of("Room0001") is None


async def test_the_room_of_a_dead_owner_is_claimed_with_a_new_epoch(node) -> None:
    a, b = await node("node-a"), await node("node-b")
    a.store.save_room(_room())
    a.store.save_checkpoint(_checkpoint(10))
    await _kill(a)
    claim = await b.ownership.claim("Room0001")
    assert (claim.kind, claim.epoch, claim.previous_node) == ("claimed", 2, "node-a")
    b.store.save_checkpoint(_checkpoint(20))  # the new owner writes
    with pytest.raises(FencedOut):  # the old one cannot, even before it checks
        a.store.save_checkpoint(_checkpoint(30))
    loaded = b.store.load_checkpoint("Room0001")
    assert loaded is not None and loaded.tick == 20


async def test_unknown_and_closed_rooms_cannot_be_claimed(node) -> None:
    a = await node("node-a")
    assert (await a.ownership.claim("Nope0000")).kind == "unknown"
    a.store.save_room(_room())
    a.store.close_room("Room0001", 5.0)
    await _kill(a)
    b = await node("node-b")
    assert (await b.ownership.claim("Room0001")).kind == "unknown"


async def test_the_heartbeat_reports_rooms_taken_over(node) -> None:
    a, b = await node("node-a"), await node("node-b")
    a.store.save_room(_room("Room0001"))
    a.store.save_room(_room("Room0002"))
    assert await a.ownership.check() == []
    await _kill(a)
    assert (await b.ownership.claim("Room0001")).kind == "claimed"
    await a.alive()  # SIGCONT: the paused node renews its lease...
    assert await a.ownership.check() == ["Room0001"]  # ...and learns what it lost
    assert a.ownership.fence.held() == {"Room0002": 1}  # the room nobody claimed stays
    assert a.ownership.lost == 1


async def test_the_watch_hands_lost_rooms_to_the_server(node) -> None:
    a, b = await node("node-a"), await node("node-b")
    a.store.save_room(_room())
    lost: asyncio.Queue[list[str]] = asyncio.Queue()
    a.ownership.watch(0.05, lost.put_nowait)
    await _kill(a)
    await b.ownership.claim("Room0001")
    async with asyncio.timeout(5):
        assert await lost.get() == ["Room0001"]


async def test_concurrent_claims_on_two_nodes_give_one_owner(node) -> None:
    a, b, c = await node("node-a"), await node("node-b"), await node("node-c")
    for i in range(RACES):
        room_id = f"Race{i:04d}"
        a.store.save_room(_room(room_id))
    await _kill(a)
    for i in range(RACES):
        room_id = f"Race{i:04d}"
        first, second = await asyncio.gather(b.ownership.claim(room_id), c.ownership.claim(room_id))
        kinds = sorted([first.kind, second.kind])
        assert kinds == ["claimed", "elsewhere"], (room_id, first, second)
        winner = first if first.kind == "claimed" else second
        loser = second if winner is first else first
        assert loser.node == winner.node and winner.epoch == 2
    assert b.ownership.claims + c.ownership.claims == RACES
