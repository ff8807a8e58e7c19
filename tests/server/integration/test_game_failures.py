"""Issue 11 item 4: the game's own code failing refuses or kicks one player, or closes one room.

Rule: a failure caused by one player's request or input (``setup`` or ``spawn_player`` for a
join, ``decode_input``/``check_input``/``apply_input`` for an input, ``despawn_player`` for a
Leave) costs that player only, and nothing it started is left behind (no room in /rooms, no
matchmaker seat, no avatar). Only a game *system* raising while the room steps closes the room,
and then it is gone everywhere at once and its players are told why (``room_failed``).
"""

from __future__ import annotations

import struct

import esper
import pytest

from astranet.client import ClientOptions, EventKind, GameClient
from astranet.errors import GameError, RoomFailed
from astranet.examples.dots import Dots, encode_input
from astranet.game import SimContext
from astranet.net.messages import ErrorMessage, FindOrCreate, Leave
from astranet.systems import Stage, add_system
from tests.server.integration.conftest import Running, StartServer, metric_value

pytestmark = pytest.mark.timeout(60)

BOOM = b"\xde\xad"  # an input blob the failing games below choke on


class FailingSetup(Dots):
    def setup(self, sim: SimContext) -> None:
        super().setup(sim)
        raise RuntimeError("setup bug")


class FailingSecondSpawn(Dots):
    """The first player of every room spawns; later ones fail after half-spawning."""

    def spawn_player(self, sim: SimContext, player_id: str) -> int:
        net_id = super().spawn_player(sim, player_id)
        if len(sim.store) > 9:  # 8 wanderers + the first player
            raise RuntimeError("spawn bug")
        return net_id


class FailingFirstSpawn(Dots):
    def spawn_player(self, sim: SimContext, player_id: str) -> int:
        raise KeyError("no spawn point")


class StructDecoder(Dots):
    """The README's one-screen game decodes with a bare struct.unpack (struct.error)."""

    def decode_input(self, blob: bytes) -> tuple[int, int]:
        return struct.unpack("<bb", blob)


class FailingCheck(Dots):
    def check_input(self, sim: SimContext, net_id: int, command: tuple[int, int]) -> str | None:
        if command == struct.unpack("<bb", BOOM):
            raise ZeroDivisionError("check bug")
        return super().check_input(sim, net_id, command)


class FailingApply(Dots):
    def apply_input(self, sim: SimContext, net_id: int, command: tuple[int, int]) -> None:
        if command == struct.unpack("<bb", BOOM):
            raise IndexError("apply bug")
        super().apply_input(sim, net_id, command)


class FailingDespawn(Dots):
    def despawn_player(self, sim: SimContext, player_id: str, net_id: int) -> None:
        raise RuntimeError("despawn bug")


class _Explode(esper.Processor):
    armed = False

    def process(self, sim: SimContext) -> None:
        if _Explode.armed:
            raise RuntimeError("system bug")


class FailingSystem(Dots):
    def setup(self, sim: SimContext) -> None:
        super().setup(sim)
        add_system(_Explode(), Stage.SIMULATE)


def _room_worlds() -> list[str]:
    return [name for name in esper.list_worlds() if name.startswith("astranet.room.")]


async def _occupancy(running: Running) -> tuple[float, float]:
    text = await running.metrics()
    return metric_value(text, "astranet_rooms"), metric_value(text, "astranet_players")


async def test_setup_raising_refuses_the_join_and_leaves_no_room(serve: StartServer) -> None:
    running = await serve(game=FailingSetup())
    worlds = _room_worlds()
    client = await running.client()
    await client.hello()
    for _ in range(2):  # the connection stays in the lobby: the client may try again
        await client.send(FindOrCreate("us-east", "coop", 2))
        refusal = await client.expect(ErrorMessage)
        assert refusal.code == "game_error"
        assert "setup() raised" in refusal.message
    assert await running.rooms() == []
    assert await _occupancy(running) == (0.0, 0.0)
    assert running.server.matchmaker.rooms() == []
    assert _room_worlds() == worlds  # the half-set-up esper world is gone too
    await client.close()


async def test_game_client_gets_a_typed_game_error_not_a_1011(serve: StartServer) -> None:
    running = await serve(game=FailingSetup())
    client = GameClient(ClientOptions(url=running.url))
    with pytest.raises(GameError, match="setup"):
        await client.connect()


async def test_spawn_raising_gives_the_seat_back_and_leaves_no_half_spawned_avatar(
    serve: StartServer,
) -> None:
    running = await serve(game=FailingSecondSpawn())
    first = await running.joined_client()
    room = running.server.rooms[first.joined.room_id]
    second = await running.client()
    await second.hello()
    await second.send(FindOrCreate("us-east", "coop", 1))
    assert (await second.expect(ErrorMessage)).code == "game_error"
    (listed,) = await running.rooms()
    assert listed["players"] == 1  # not 2: the seat went back
    assert running.server.matchmaker.room(room.room_id).players == 1
    assert len(room.store) == 9 and len(room.players) == 1  # no ghost avatar
    assert await _occupancy(running) == (1.0, 1.0)
    await first.send_input(encode_input(1, 0))
    await first.next_snapshot()  # the room plays on
    await first.close()
    await second.close()


async def test_spawn_raising_in_a_new_room_removes_the_room(serve: StartServer) -> None:
    running = await serve(game=FailingFirstSpawn())
    client = await running.client()
    await client.hello()
    await client.send(FindOrCreate("us-east", "coop", 1))
    assert (await client.expect(ErrorMessage)).code == "game_error"
    assert await running.rooms() == []
    assert running.server.rooms == {}
    assert await _occupancy(running) == (0.0, 0.0)
    await client.close()


async def test_a_decoder_raising_struct_error_counts_the_blob_as_undecodable(
    serve: StartServer,
) -> None:
    """The README's struct.unpack decoder used to close the room for everyone on 1 byte."""
    running = await serve(game=StructDecoder())
    players = [await running.joined_client() for _ in range(4)]
    attacker = players[0]
    for _ in range(3):
        await attacker.send_input(b"\x01")  # 1 byte: struct.error
    last = await attacker.send_input(encode_input(1, 0))
    await attacker.snapshot_where(lambda s: (s.last_input_seq or 0) >= last.seq)
    for player in players[1:]:
        await player.next_snapshot()  # everyone still plays
    assert metric_value(await running.metrics(), "astranet_undecodable_inputs_total") == 3
    (listed,) = await running.rooms()
    assert listed["players"] == 4
    for player in players:
        await player.close()


@pytest.mark.parametrize("game", [FailingCheck(), FailingApply()], ids=["check", "apply"])
async def test_check_or_apply_raising_kicks_only_that_player(
    serve: StartServer, game: Dots
) -> None:
    running = await serve(game=game)
    victim = await running.joined_client()
    bystander = await running.joined_client()
    assert victim.joined.room_id == bystander.joined.room_id
    await victim.send_input(BOOM)
    code, reason = await victim.closed()
    assert code == 1008
    assert reason.startswith("game error: ") and "raised" in reason
    await running.ended(victim)
    sent = await bystander.send_input(encode_input(0, 1))
    await bystander.snapshot_where(lambda s: (s.last_input_seq or 0) >= sent.seq)
    (listed,) = await running.rooms()
    assert listed["room_id"] == bystander.joined.room_id  # the room is still there
    assert metric_value(await running.metrics(), "astranet_kicks_total", reason="game_error") == 1
    await bystander.close()


async def test_despawn_raising_on_leave_still_removes_the_avatar(serve: StartServer) -> None:
    running = await serve(game=FailingDespawn())
    leaver = await running.joined_client()
    stayer = await running.joined_client()
    room = running.server.rooms[leaver.joined.room_id]
    avatar = leaver.joined.entity
    await leaver.send(Leave())
    assert (await leaver.closed())[0] == 1000
    await running.ended(leaver)
    assert not bool(room.store.contains([avatar])[0])  # the library's despawn took over
    assert room.room_id in running.server.rooms
    await stayer.next_snapshot()
    (listed,) = await running.rooms()
    assert listed["players"] == 1
    await stayer.close()


async def test_a_failing_system_closes_the_room_everywhere_and_says_why(
    serve: StartServer,
) -> None:
    running = await serve(game=FailingSystem())
    players = [await running.joined_client() for _ in range(2)]
    other_room = await running.joined_client(region="eu-central")
    _Explode.armed = True
    try:
        for player in players:
            refusal = await player.expect(ErrorMessage)
            assert refusal.code == "room_failed"
            assert await player.closed() == (1011, "room failed")
    finally:
        _Explode.armed = False
    rooms = await running.rooms()
    assert [room["room_id"] for room in rooms] == []  # eu-central's room failed the same way
    assert await _occupancy(running) == (0.0, 0.0)
    assert running.server.matchmaker.rooms() == []
    await other_room.close()


async def test_game_client_does_not_retry_a_failed_room(serve: StartServer) -> None:
    running = await serve(game=FailingSystem())
    client = GameClient(ClientOptions(url=running.url, backoff_initial_s=0.01))
    await client.connect()
    _Explode.armed = True
    try:
        closed = await client.wait_for(EventKind.CLOSED)
    finally:
        _Explode.armed = False
    assert closed.detail.startswith("1011 room failed")
    assert isinstance(client.error, RoomFailed)
    kinds = {event.kind for event in client.drain_events()}
    assert EventKind.RECONNECTING not in kinds
