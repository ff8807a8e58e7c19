"""The Redis room directory against a real redis-server: seats, placement, leases, reaping."""

from __future__ import annotations

import asyncio
import collections
import secrets
import time

import pytest

from astranet.cluster import ClusterTimings, HostedRoom, NodeLease
from astranet.cluster.timings import DEAD_DEADLINE_S, ROOMS_GONE_DEADLINE_S
from astranet.errors import (
    ClusterUnavailable,
    ConfigurationError,
    RoomFull,
    RoomNotFound,
    SeatExpired,
    UnknownRegion,
)
from astranet.tools.redisproc import free_port
from tests.cluster.conftest import FAST_TIMINGS


async def _alive(*directories):
    for directory in directories:
        await directory.heartbeat(0, 0, [])


async def _occupancy(directory) -> dict[str, int]:
    """room_id -> players + live holds, read straight from Redis."""
    client, ns = directory.client, directory.namespace
    result = {}
    for room in await directory.rooms():
        now_ms = int(time.time() * 1000)
        holds = await client.zcount(f"{ns}:holds:{room['room_id']}", f"({now_ms}", "+inf")
        result[room["room_id"]] = room["players"] + holds
    return result


def test_default_timings_meet_the_a2_deadlines():
    timings = ClusterTimings().validate()
    assert timings.worst_dead_after_last_heartbeat_s() <= DEAD_DEADLINE_S == 10.0
    assert timings.worst_rooms_gone_after_stop_s() <= ROOMS_GONE_DEADLINE_S == 15.0
    assert timings.worst_rooms_deleted_after_stop_s() <= 15.0
    assert timings.meets_deadlines()
    assert not ClusterTimings(lease_s=12.0, room_ttl_s=20.0).meets_deadlines()
    with pytest.raises(ConfigurationError):
        ClusterTimings(heartbeat_s=6.0).validate()
    FAST_TIMINGS.validate()


async def test_unreachable_redis_names_the_url():
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(ClusterUnavailable, match=url):
        from astranet.cluster import RoomDirectory

        await RoomDirectory.connect(url, "n1", "ws://x", ["us-east"], timings=FAST_TIMINGS)


async def test_first_request_creates_on_the_node_asked_and_seats_there(make_directory):
    a = await make_directory("a")
    await _alive(a)
    placement = await a.find_or_create("us-east", "coop", 1)
    assert placement.local and placement.created and placement.node == "a"
    assert placement.seat_token is None
    rooms = await a.rooms()
    assert [(r["room_id"], r["players"], r["node"]) for r in rooms] == [(placement.room_id, 1, "a")]
    assert rooms[0]["url"] == a.url


async def test_unknown_region_when_no_live_node_serves_it(make_directory):
    a = await make_directory("a", regions=("us-east",))
    await _alive(a)
    with pytest.raises(UnknownRegion):
        await a.find_or_create("eu-central", "coop", 1)


async def test_new_rooms_go_to_the_least_loaded_node_ties_to_the_node_asked(make_directory):
    a, b = await make_directory("a"), await make_directory("b")
    await _alive(a, b)
    first = await b.find_or_create("us-east", "m1", 1)  # tie 0/0: the node asked
    assert first.node == "b" and first.local
    second = await b.find_or_create("us-east", "m2", 1)  # b has 1 player now, a has 0
    assert second.node == "a" and not second.local and second.created
    assert second.url == a.url and len(second.seat_token) == 16


async def test_seat_token_is_single_use_and_only_for_its_room(make_directory):
    a, b = await make_directory("a"), await make_directory("b")
    await _alive(a, b)
    await b.find_or_create("us-east", "m", 1)  # load b so the next room lands on a
    redirect = await b.find_or_create("us-east", "other", 1)
    assert redirect.node == "a"
    with pytest.raises(SeatExpired):
        await a.claim_seat(redirect.room_id, secrets.token_bytes(16))  # wrong token
    # On a node that does not own the room: redirected again, the token still unspent.
    again = await b.claim_seat(redirect.room_id, redirect.seat_token)
    assert not again.local and again.node == "a" and again.seat_token == redirect.seat_token
    seated = await a.claim_seat(redirect.room_id, redirect.seat_token)
    assert seated.local and seated.node == "a"
    with pytest.raises(SeatExpired):
        await a.claim_seat(redirect.room_id, redirect.seat_token)  # used
    players = {r["room_id"]: r["players"] for r in await a.rooms()}
    assert players[redirect.room_id] == 1


async def test_seat_token_expires(make_directory):
    timings = ClusterTimings(heartbeat_s=0.2, lease_s=1.0, reap_s=0.2, room_ttl_s=1.5, seat_s=0.3)
    a = await make_directory("a", timings=timings)
    b = await make_directory("b", timings=timings)
    await _alive(a, b)
    await b.find_or_create("us-east", "m", 1)
    redirect = await b.find_or_create("us-east", "m2", 1)
    await asyncio.sleep(0.45)  # the token's own TTL is the thing under test
    with pytest.raises(SeatExpired):
        await a.claim_seat(redirect.room_id, redirect.seat_token)
    assert (await _occupancy(a))[redirect.room_id] == 0  # its hold went with it


async def test_retried_request_gets_the_same_room_never_a_twin(make_directory):
    """Colyseus #978: a caller times out but the callee was only slow, and retries."""
    a, b = await make_directory("a"), await make_directory("b")
    await _alive(a, b)
    first = await a.find_or_create("us-east", "coop", 1, request_id="req-1")
    retry = await a.find_or_create("us-east", "coop", 1, request_id="req-1")
    assert retry == first
    assert len(await a.rooms()) == 1
    assert (await _occupancy(a))[first.room_id] == 1


async def test_concurrent_creates_claim_one_room(make_directory):
    nodes = [await make_directory(f"n{i}") for i in range(3)]
    await _alive(*nodes)
    placements = await asyncio.gather(*(n.find_or_create("us-east", "duo", 2) for n in nodes[:2]))
    assert placements[0].room_id == placements[1].room_id  # 2 + 2 fit in one room of 4
    assert sum(p.created for p in placements) == 1


async def test_24_concurrent_joins_on_three_nodes_never_overfill(make_directory):
    nodes = [await make_directory(f"n{i}") for i in range(3)]
    await _alive(*nodes)
    parties = [1, 2, 1, 3, 1, 1, 2, 1] * 3  # 36 seats
    requests = [
        nodes[i % 3].find_or_create("us-east", "coop", size) for i, size in enumerate(parties)
    ]
    placements = await asyncio.gather(*requests)
    occupancy = await _occupancy(nodes[0])
    assert all(seats <= 4 for seats in occupancy.values()), occupancy
    assert sum(occupancy.values()) == sum(parties)
    assert len(occupancy) == 9  # 36 seats in rooms of 4: packed, no half-empty twins
    by_node = collections.Counter(room["node"] for room in await nodes[0].rooms())
    assert len(by_node) == 3, by_node  # spread over the nodes
    assert {p.room_id for p in placements} == set(occupancy)


async def test_party_holds_block_other_parties_and_are_taken_by_join_room(make_directory):
    a = await make_directory("a")
    await _alive(a)
    party = await a.find_or_create("us-east", "coop", 3)  # 1 player + 2 held
    assert len(party.party_token) == 16
    other = await a.find_or_create("us-east", "coop", 2)
    assert other.room_id != party.room_id  # 3 + 2 > 4
    single = await a.join_room(party.room_id)  # no party token: only the free seat
    assert single.local
    with pytest.raises(RoomFull):
        await a.join_room(party.room_id)  # the rest is the party's (A4)
    with pytest.raises(RoomFull):
        await a.join_room(party.room_id, secrets.token_bytes(16))
    assert (await a.join_room(party.room_id, party.party_token)).local
    assert (await a.join_room(party.room_id, party.party_token)).local
    with pytest.raises(RoomFull):
        await a.join_room(party.room_id, party.party_token)
    with pytest.raises(RoomNotFound):
        await a.join_room("zzzzzzzz")


async def test_join_room_on_a_foreign_node_redirects_with_a_held_seat(make_directory):
    a, b = await make_directory("a"), await make_directory("b")
    await _alive(a, b)
    room = await a.find_or_create("us-east", "coop", 1)
    redirect = await b.join_room(room.room_id)
    assert not redirect.local and redirect.url == a.url and redirect.seat_token
    assert (await _occupancy(a))[room.room_id] == 2  # the seat is held for the redirect
    assert (await a.claim_seat(room.room_id, redirect.seat_token)).local


async def test_rooms_expire_unless_their_node_refreshes_them(make_directory):
    a = await make_directory("a")
    await _alive(a)
    await a.register_room("Room0001", "us-east", "coop", 2)
    assert [r["room_id"] for r in await a.rooms()] == ["Room0001"]
    reply = await a.heartbeat(2, 7, ["Room0001"])
    assert not reply.fresh and reply.missing == ()
    assert (await a.rooms())[0]["tick"] == 7
    await asyncio.sleep(FAST_TIMINGS.room_ttl_s + 0.3)  # no heartbeat: the TTL under test
    assert await a.client.exists(f"{a.namespace}:room:Room0001") == 0
    reply = await a.heartbeat(2, 8, ["Room0001"])
    assert reply.fresh and reply.missing == ("Room0001",)


async def test_dead_node_vanishes_then_is_reaped_once_when_all_reap_at_once(make_directory):
    a, b, c = [await make_directory(n) for n in "abc"]
    await _alive(a, b, c)
    await c.register_room("RoomOnC1", "us-east", "coop", 1)
    assert {n["node"] for n in await a.nodes()} == {"a", "b", "c"}
    # Only a and b keep heartbeating; c stops.
    for _ in range(int(FAST_TIMINGS.lease_s / FAST_TIMINGS.heartbeat_s) + 2):
        await _alive(a, b)
        await asyncio.sleep(FAST_TIMINGS.heartbeat_s)
    assert {n["node"] for n in await a.nodes()} == {"a", "b"}
    assert await a.rooms() == []  # hidden as soon as the lease lapsed
    reaped = await asyncio.gather(a.reap(), b.reap(), a.reap(), b.reap())
    assert sorted(node for batch in reaped for node in batch) == ["c"]
    assert await a.client.exists(f"{a.namespace}:noderooms:c") == 0
    placement = await a.find_or_create("us-east", "coop", 1)
    assert placement.node in {"a", "b"}


async def test_retire_removes_the_node_and_its_rooms_at_once(make_directory):
    a, b = await make_directory("a"), await make_directory("b")
    await _alive(a, b)
    await b.register_room("RoomOnB1", "us-east", "coop", 1)
    await b.retire()
    assert await a.rooms() == []
    assert [n["node"] for n in await a.nodes()] == ["a"]


async def test_lease_task_reregisters_rooms_after_redis_restart(private_redis):
    from astranet.cluster import RoomDirectory

    directory = await RoomDirectory.connect(
        private_redis.url, "a", "ws://a", ["us-east"], timings=FAST_TIMINGS
    )
    hosted = [HostedRoom("RoomKeep", "us-east", "coop", 3)]
    lease = NodeLease(directory, lambda: hosted, lambda: 42)
    await lease.start()
    try:
        assert [r["players"] for r in await directory.rooms()] == [3]
        private_redis.stop()
        with pytest.raises(ClusterUnavailable):
            await directory.find_or_create("us-east", "coop", 1)
        await asyncio.sleep(FAST_TIMINGS.heartbeat_s * 3)
        assert not lease.available
        private_redis.start()  # empty: no persistence
        for _ in range(50):
            if lease.available:
                break
            await asyncio.sleep(FAST_TIMINGS.heartbeat_s)
        assert lease.available
        rows = await directory.rooms()
        assert [(r["room_id"], r["players"], r["tick"]) for r in rows] == [("RoomKeep", 3, 42)]
    finally:
        await lease.stop()
        await directory.close()
