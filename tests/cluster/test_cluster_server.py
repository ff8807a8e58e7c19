"""Cluster mode end to end: in-process nodes on one real redis-server, real WebSockets."""

from __future__ import annotations

import asyncio
import collections
import json
import secrets

from astranet.net.messages import (
    ErrorMessage,
    FindOrCreate,
    JoinAccepted,
    JoinRoom,
    MatchResult,
    Resume,
)
from tests.server.integration.conftest import WireClient


async def accepted(client: WireClient) -> JoinAccepted:
    """The JoinAccepted of a JoinRoom/Resume (a plain MatchResult may come first, as in v1)."""
    reply = await client.recv()
    if isinstance(reply, MatchResult):
        assert reply.url is None
        reply = await client.recv()
    assert isinstance(reply, JoinAccepted), reply
    return reply


async def join_following_redirects(url: str, region: str = "us-east", mode: str = "coop"):
    """FindOrCreate at ``url``; on a redirect, JoinRoom with the seat token at the new URL.
    Returns (client, JoinAccepted, redirected)."""
    client = await WireClient.open(url)
    await client.hello()
    await client.send(FindOrCreate(region, mode, 1))
    result = await client.expect(MatchResult)
    if result.url is None:
        return client, await client.expect(JoinAccepted), False
    await client.close()
    client = await WireClient.open(result.url)
    await client.hello()
    await client.send(JoinRoom(result.room_id, result.seat_token))
    joined = await accepted(client)
    assert joined.room_id == result.room_id
    return client, joined, True


async def test_redirect_seats_the_player_on_the_owner(start_node):
    a = await start_node("--node-id", "a")
    b = await start_node("--node-id", "b")
    first, joined_a, redirected = await join_following_redirects(a.url)
    assert not redirected
    # b is asked for the same mode: the room on a has free seats -> redirect to a.
    second, joined_b, redirected = await join_following_redirects(b.url)
    assert redirected and joined_b.room_id == joined_a.room_id
    assert joined_b.room_id in a.server.rooms and not b.server.rooms
    # A new mode asked at a: b has fewer players -> the room is placed on b.
    third, joined_c, redirected = await join_following_redirects(a.url, mode="duel")
    assert redirected and joined_c.room_id in b.server.rooms
    for node in (a, b):
        await node.server.backend._refresh_views()
        rooms = {r["room_id"]: r for r in await node.rooms()}
        assert rooms[joined_a.room_id]["node"] == "a" and rooms[joined_a.room_id]["players"] == 2
        assert rooms[joined_c.room_id]["node"] == "b"
        assert rooms[joined_c.room_id]["url"] == b.url
        status, _, body = await node.get("/nodes")
        assert status == 200
        assert {n["node"]: n["players"] for n in json.loads(body)} == {"a": 2, "b": 1}
    metrics = await b.metrics()
    assert "astranet_cluster_redirects_total 1.0" in metrics
    assert "astranet_cluster_redis_roundtrip_seconds_count" in metrics
    for client in (first, second, third):
        await client.close()


async def test_seat_token_misuse_is_seat_expired(start_node):
    a = await start_node("--node-id", "a")
    b = await start_node("--node-id", "b")
    first, joined, _ = await join_following_redirects(a.url)
    asker = await WireClient.open(b.url)
    await asker.hello()
    await asker.send(FindOrCreate("us-east", "coop", 1))
    redirect = await asker.expect(MatchResult)
    assert redirect.url == a.url and redirect.seat_token
    wrong = await WireClient.open(a.url)
    await wrong.hello()
    await wrong.send(JoinRoom(redirect.room_id, secrets.token_bytes(16)))
    assert (await wrong.expect(ErrorMessage)).code == "seat_expired"
    good = await WireClient.open(a.url)
    await good.hello()
    await good.send(JoinRoom(redirect.room_id, redirect.seat_token))
    assert (await accepted(good)).room_id == joined.room_id
    again = await WireClient.open(a.url)
    await again.hello()
    await again.send(JoinRoom(redirect.room_id, redirect.seat_token))  # used
    assert (await again.expect(ErrorMessage)).code == "seat_expired"
    for client in (first, asker, wrong, good, again):
        await client.close()


async def test_resume_on_another_node_is_redirected_to_the_owner(start_node):
    a = await start_node("--node-id", "a")
    b = await start_node("--node-id", "b")
    client, joined, _ = await join_following_redirects(a.url)
    client.ws.transport.abort()  # an abrupt drop: the seat is held for Resume
    await a.ended(client)
    elsewhere = await WireClient.open(b.url)
    await elsewhere.hello()
    resume = Resume(joined.room_id, joined.player_id, joined.resume_token)
    await elsewhere.send(resume)
    redirect = await elsewhere.expect(MatchResult)
    assert redirect.url == a.url and redirect.room_id == joined.room_id
    owner = await WireClient.open(redirect.url)
    await owner.hello()
    await owner.send(resume)
    back = await accepted(owner)
    assert back.player_id == joined.player_id and back.entity == joined.entity
    lost = await WireClient.open(b.url)
    await lost.hello()
    await lost.send(Resume("Zz0000zZ", "p", b"t"))
    assert (await lost.expect(ErrorMessage)).code == "room_lost"
    for c in (elsewhere, owner, lost):
        await c.close()


async def test_24_concurrent_joins_over_three_nodes_never_overfill(start_node):
    nodes = [await start_node("--node-id", f"n{i}") for i in range(3)]
    results = await asyncio.gather(*(join_following_redirects(nodes[i % 3].url) for i in range(24)))
    per_room = collections.Counter(joined.room_id for _, joined, _ in results)
    assert sum(per_room.values()) == 24
    assert max(per_room.values()) <= 4
    assert len(per_room) == 6  # packed: no twins, no half-empty extras
    hosted = collections.Counter()
    for node in nodes:
        for room_id, room in node.server.rooms.items():
            hosted[room_id] += len(room.players)
    assert hosted == per_room  # every player is in the room the directory seated them in
    for client, _, _ in results:
        await client.close()


async def test_a_second_request_while_matching_is_refused(start_node):
    a = await start_node("--node-id", "a")
    client = await WireClient.open(a.url)
    await client.hello()
    await client.send(FindOrCreate("us-east", "coop", 1))
    await client.send(FindOrCreate("us-east", "coop", 1))  # while the first is answered
    replies = [await client.recv() for _ in range(3)]
    kinds = [type(r) for r in replies]
    assert kinds.count(MatchResult) == 1 and kinds.count(JoinAccepted) == 1
    [error] = [r for r in replies if isinstance(r, ErrorMessage)]
    assert error.code == "bad_request"
    await client.close()


async def test_redis_outage_keeps_rooms_ticking_and_refuses_new_matchmaking(
    start_node, private_redis
):
    a = await start_node("--node-id", "a", redis=private_redis.url)
    player, joined, _ = await join_following_redirects(a.url)
    await player.next_snapshot()
    private_redis.stop()
    newcomer = await WireClient.open(a.url)
    await newcomer.hello()
    await newcomer.send(FindOrCreate("us-east", "coop", 1))
    error = await newcomer.expect(ErrorMessage, within_s=5.0)
    assert error.code == "unavailable" and private_redis.url in error.message
    before = len(player.snapshots)
    for _ in range(15):  # half a second of ticks while Redis is gone
        await player.next_snapshot()
    assert len(player.snapshots) >= before + 15
    private_redis.start()  # empty: the node must register its room again
    lease = a.server.backend.lease
    async with asyncio.timeout(10):
        while not lease.available:  # noqa: ASYNC110 - a flag another task sets; poll it
            await asyncio.sleep(0.1)
    rows = await a.server.backend.directory.rooms()
    assert [(r["room_id"], r["players"]) for r in rows] == [(joined.room_id, 1)]
    await newcomer.send(FindOrCreate("us-east", "coop", 1))
    assert (await newcomer.expect(MatchResult)).room_id == joined.room_id
    await newcomer.close()
    await player.close()


async def test_embedded_server_refuses_seat_tokens(serve_embedded):
    client = await WireClient.open(serve_embedded.url)
    await client.hello()
    await client.send(JoinRoom("Abcd1234", b"x" * 16))
    assert (await client.expect(ErrorMessage)).code == "seat_expired"
    await client.close()


async def test_library_client_follows_the_redirect_by_itself(start_node):
    from astranet.client import ClientOptions, GameClient

    a = await start_node("--node-id", "a")
    b = await start_node("--node-id", "b")
    first, joined, _ = await join_following_redirects(a.url)
    client = GameClient(ClientOptions(url=b.url, reconnect=False))
    accepted = await client.connect()  # one join, as far as the application sees
    assert accepted.room_id == joined.room_id
    assert client.served_url == a.url and client.stats.redirects == 1
    await client.close()
    await first.close()


async def test_a_party_redirected_keeps_its_party_token(start_node):
    a = await start_node("--node-id", "a")
    b = await start_node("--node-id", "b")
    first, _, _ = await join_following_redirects(a.url, mode="m1")  # a: 1 player
    leader = await WireClient.open(a.url)  # a new mode: placed on b (fewer players)
    await leader.hello()
    await leader.send(FindOrCreate("us-east", "m2", 2))
    redirect = await leader.expect(MatchResult)
    assert redirect.url == b.url and redirect.party_token
    friend = await WireClient.open(a.url)  # the friend asks the wrong node too
    await friend.hello()
    await friend.send(JoinRoom(redirect.room_id, party_token=redirect.party_token))
    hop = await friend.expect(MatchResult)
    assert hop.url == b.url and hop.seat_token
    stranger = await WireClient.open(b.url)
    await stranger.hello()
    await stranger.send(JoinRoom(redirect.room_id))  # 4 seats: leader, friend, 2 free
    assert (await accepted(stranger)).room_id == redirect.room_id
    for client in (first, leader, friend, stranger):
        await client.close()
