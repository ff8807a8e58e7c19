"""orbs, tested the way players meet it: the real server, real clients, on 127.0.0.1."""

import pytest
from orbs import encode_input, game
from orbs_single import SPEED

from astranet.testing import TestServer


async def test_holding_right_moves_the_player_right() -> None:
    async with TestServer(game) as server:  # a real server on free ports, shut down after
        (player,) = await server.join(1, game_mode="orbs")  # joined, decoding its snapshots
        start_x, start_y = player.value("Body.pos")  # our avatar, as the server sent it
        await player.hold(encode_input(1.0, 0.0), ticks=30)  # 1 s of "stick right"
        x, y = player.value("Body.pos")
        assert x == pytest.approx(start_x + SPEED, abs=0.1)  # 1 s at SPEED, on the 1/256 grid
        assert y == start_y  # and not a bit up or down


async def test_two_players_share_a_room_and_see_each_other() -> None:
    async with TestServer(game) as server:
        alice, bob = await server.join(2, game_mode="orbs")
        assert alice.joined.room_id == bob.joined.room_id
        await server.run_for(0.5)  # both keep reading snapshots for half a second
        assert bob.value("Body.pos", alice.entity) is not None  # bob sees alice's avatar
        assert len(bob.snapshots) >= 5
