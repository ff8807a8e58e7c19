"""WIRE rule 2 (matchmaking) over real sockets: placement, party seats, refusals, concurrency."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import msgpack
import pytest

from astranet.net.messages import ErrorMessage, FindOrCreate, JoinAccepted, MatchResult

from .conftest import Running, StartServer, WireClient

pytestmark = pytest.mark.timeout(30)

ROOM_ID = re.compile(r"[A-Za-z0-9]{8}")


async def _join_room(
    running: Running, room_id: str, party_token: bytes | None = None
) -> WireClient | ErrorMessage:
    client = await running.client()
    await client.hello()
    # Hand-packed: the client-side encoder refuses ill-formed ids, a hostile client does not.
    request: dict[str, object] = {"t": "JoinRoom", "room_id": room_id}
    if party_token is not None:
        request["party_token"] = party_token
    await client.send_raw(msgpack.packb(request))
    reply = await client.expect((JoinAccepted, ErrorMessage, MatchResult))  # type: ignore[arg-type]
    if isinstance(reply, ErrorMessage):
        return reply
    if isinstance(reply, MatchResult):
        reply = await client.expect(JoinAccepted)
    client.joined = reply
    return client


async def test_find_or_create_replies_match_result_then_join_accepted(running: Running) -> None:
    client = await running.client()
    await client.hello()
    await client.send(FindOrCreate("us-east", "coop", 1))
    first = await client.recv()
    second = await client.recv()
    assert isinstance(first, MatchResult) and ROOM_ID.fullmatch(first.room_id)
    assert isinstance(second, JoinAccepted)
    assert second.room_id == first.room_id
    assert second.tick_hz == 30 and len(second.session_key) == 32
    assert second.entity is not None and second.resume_token


async def test_capacity_is_four_then_a_new_room(running: Running) -> None:
    clients = [await running.joined_client() for _ in range(5)]
    rooms = Counter(c.joined.room_id for c in clients)  # type: ignore[union-attr]
    assert sorted(rooms.values()) == [1, 4]
    listed = {r["room_id"]: r for r in await running.rooms()}
    assert {r["players"] for r in listed.values()} == {1, 4}
    assert all(r["capacity"] == 4 for r in listed.values())


async def test_party_seats_are_held_for_join_room(running: Running) -> None:
    leader = await running.joined_client(party_size=3)
    room_id = leader.joined.room_id  # type: ignore[union-attr]
    party_token = leader.match.party_token  # type: ignore[union-attr]
    assert isinstance(party_token, bytes) and len(party_token) == 16
    for _ in range(2):  # the two held seats
        friend = await _join_room(running, room_id, party_token)
        assert isinstance(friend, WireClient) and friend.joined.room_id == room_id  # type: ignore[union-attr]
    # 3 players, 1 free seat: a party of 2 does not fit and gets a new room ...
    pair = await running.joined_client(party_size=2)
    assert pair.joined.room_id != room_id  # type: ignore[union-attr]
    # ... but a party of 1 does (fullest room first).
    solo = await running.joined_client(party_size=1)
    assert solo.joined.room_id == room_id  # type: ignore[union-attr]
    full = await _join_room(running, room_id)
    assert isinstance(full, ErrorMessage) and full.code == "room_full"


async def test_held_seats_are_the_partys_a_stranger_gets_room_full(running: Running) -> None:
    leader = await running.joined_client(party_size=4)
    room_id = leader.joined.room_id  # type: ignore[union-attr]
    assert leader.match.party_token is not None  # type: ignore[union-attr]
    # Someone who read the room id from /rooms: no token, no free seat -> room_full (A4).
    stranger = await _join_room(running, room_id)
    assert isinstance(stranger, ErrorMessage) and stranger.code == "room_full"
    forged = await _join_room(running, room_id, b"\x00" * 16)
    assert isinstance(forged, ErrorMessage) and forged.code == "room_full"
    friend = await _join_room(running, room_id, leader.match.party_token)  # type: ignore[union-attr]
    assert isinstance(friend, WireClient)
    solo = await running.joined_client(party_size=1)
    assert solo.match.party_token is None  # type: ignore[union-attr]


async def test_held_seats_keep_find_or_create_out(running: Running) -> None:
    leader = await running.joined_client(party_size=4)
    other = await running.joined_client(party_size=1)
    assert other.joined.room_id != leader.joined.room_id  # type: ignore[union-attr]


async def test_unknown_region_names_the_served_regions(serve: StartServer) -> None:
    running = await serve("--regions", "eu-central,ap-south")
    client = await running.client()
    await client.hello()
    await client.send(FindOrCreate("mars-1", "coop", 1))
    error = await client.expect(ErrorMessage)
    assert error.code == "unknown_region"
    assert "eu-central" in error.message and "ap-south" in error.message
    # The refusal leaves us in the lobby: a served region then works.
    await client.send(FindOrCreate("ap-south", "coop", 1))
    assert ROOM_ID.fullmatch((await client.expect(MatchResult)).room_id)


@pytest.mark.parametrize("party_size", [0, 5, -1, 2**40])
async def test_party_size_out_of_range_is_bad_request(running: Running, party_size: int) -> None:
    client = await running.client()
    await client.hello()
    await client.send_raw(
        msgpack.packb(
            {
                "t": "FindOrCreate",
                "region": "us-east",
                "game_mode": "coop",
                "party_size": party_size,
            }
        )
    )
    error = await client.expect(ErrorMessage)
    assert error.code == "bad_request"
    assert client.ws.close_code is None


async def test_join_room_of_unknown_room_is_room_not_found(running: Running) -> None:
    for room_id in ("Zz000000", "not-a-room-id"):
        reply = await _join_room(running, room_id)
        assert isinstance(reply, ErrorMessage)
        assert (reply.code, reply.message) == ("room_not_found", "room ID does not exist")


async def test_game_modes_never_mix(running: Running) -> None:
    a = await running.joined_client(game_mode="coop")
    b = await running.joined_client(game_mode="pvp-2")
    c = await running.joined_client(game_mode="coop")
    assert a.joined.room_id == c.joined.room_id != b.joined.room_id  # type: ignore[union-attr]
    modes = {r["room_id"]: r["game_mode"] for r in await running.rooms()}
    assert modes[b.joined.room_id] == "pvp-2"  # type: ignore[union-attr]


async def test_configured_game_modes_refuse_others(serve: StartServer) -> None:
    running = await serve("--game-modes", "coop,duel")
    client = await running.client()
    await client.hello()
    await client.send(FindOrCreate("us-east", "battle", 1))
    assert (await client.expect(ErrorMessage)).code == "bad_request"
    await client.send(FindOrCreate("us-east", "duel", 1))
    assert isinstance(await client.expect(MatchResult), MatchResult)


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_forty_simultaneous_find_or_create_never_overfill(running: Running) -> None:
    async def one(party_size: int) -> JoinAccepted:
        client = await running.client()
        return await client.join(party_size=party_size)

    # A mix of solo players and parties, all in flight at once.
    sizes = [1] * 30 + [2] * 6 + [3] * 4
    joined = await asyncio.gather(*(one(size) for size in sizes))
    per_room = Counter(j.room_id for j in joined)
    assert sum(per_room.values()) == len(sizes)
    listed = await running.rooms()
    for room in listed:
        assert room["players"] <= room["capacity"] == 4
        assert room["players"] == per_room[room["room_id"]]
    # Players plus held seats never exceed capacity either.
    held = {r.room_id: r.held_seats for r in running.server.matchmaker.rooms()}
    for room in listed:
        assert room["players"] + held[room["room_id"]] <= 4


@pytest.mark.timeout(10)
async def test_an_over_long_region_is_an_unknown_region_naming_the_served_ones(
    running: Running,
) -> None:
    client = await running.client()
    await client.hello()
    await client.send_raw(
        msgpack.packb(
            {"t": "FindOrCreate", "region": "x" * 200, "game_mode": "coop", "party_size": 1}
        )
    )
    error = await client.expect(ErrorMessage)
    assert error.code == "unknown_region"
    assert "us-east" in error.message
