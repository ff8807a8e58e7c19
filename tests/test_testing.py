"""astranet.testing, the public harness: it serves, joins, steps, conditions and decodes."""

from __future__ import annotations

import asyncio

import pytest

from astranet.examples.dots import encode_input
from astranet.net.messages import ErrorMessage, Hello, Ping, Pong
from astranet.testing import FakeClock, LinkProfile, TestServer

pytestmark = pytest.mark.timeout(60)


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(5.0)
    assert clock() == 5.0
    assert clock.advance(0.5) == 5.5
    clock.now += 1
    assert clock() == 6.5


async def test_two_players_join_one_room_and_see_each_other_move() -> None:
    async with TestServer("astranet.examples.dots:game") as server:
        alice, bob = await server.join(2, game_mode="dots")
        assert alice.joined.room_id == bob.joined.room_id
        for _ in range(10):
            frame = await alice.send_input(encode_input(1.0, 0.0))
        snapshot = await alice.applied(frame.seq)
        assert snapshot.last_input_seq == frame.seq
        await server.ticks(3, via=bob)
        start = bob.value("Body.pos", alice.entity)
        await server.run_for(0.3)
        assert len(bob.snapshots) >= 5
        assert bob.value("Body.pos", alice.entity)[0] >= start[0]
        assert (await server.rooms())[0]["players"] == 2
        assert await server.metric("astranet_players") == 2


async def test_ticks_waits_for_that_many_server_ticks() -> None:
    async with TestServer() as server:
        (player,) = await server.join(1)
        await server.ticks(1)
        before = player.snapshots[-1].server_tick
        await server.ticks(15)
        assert player.snapshots[-1].server_tick >= before + 15


async def test_the_link_conditioner_delays_what_clients_see() -> None:
    async with TestServer(link=LinkProfile(latency_ms=60.0)) as server:
        assert server.url != server.server_url
        (player,) = await server.join(1)
        await server.ticks(2)
        # A Pong's round trip crosses the conditioner twice each way: >= 2 * 60 ms.
        loop = asyncio.get_running_loop()
        started = loop.time()
        await player.send(Ping(1, 0))
        while not isinstance(await player.recv(), Pong):
            pass
        assert loop.time() - started >= 0.11


async def test_a_test_can_send_what_no_real_client_would() -> None:
    async with TestServer() as server:
        client = await server.client()
        await client.send(Hello(2))
        refusal = await client.expect(ErrorMessage)
        assert refusal.code == "protocol_mismatch"
        assert (await client.closed())[0] == 1002
