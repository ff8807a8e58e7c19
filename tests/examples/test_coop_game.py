"""astranet/examples/coop/game.py and systems.py: the rules, determinism and the server's hooks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from astranet.examples.coop import DRONE, PLAYER, PROJECTILE, TEAM, Command, encode_command, game
from astranet.examples.coop import systems as coop_systems
from astranet.examples.coop.components import ARENA, MAX_SCORE
from astranet.examples.coop.sim import (
    CONTACT_DAMAGE,
    MAX_DRONES,
    MAX_PROJECTILES,
    PLAYER_HP,
    SCORE_PER_KILL,
    wave_size,
)
from astranet.examples.coop.systems import KindRows
from astranet.server.room import Room

from .conftest import CoopWorld, play

World = Callable[..., CoopWorld]


def place(world: CoopWorld, net_id: int, xy: tuple[float, float]) -> None:
    world.store["Body.pos"][world.store.rows([net_id])[0]] = xy


def test_kind_rows_follow_spawns_despawns_and_kind_writes(make_world: World) -> None:
    world = make_world()
    store, rows = world.store, KindRows()
    me = world.join("p1")
    world.step()  # wave 1: 8 drones
    assert len(world.rows_of(DRONE)) == wave_size(1)
    assert rows(store, PLAYER).tolist() == [store.row(me)]
    assert rows(store, DRONE).tolist() == world.rows_of(DRONE).tolist()
    assert not rows(store, DRONE).flags.writeable  # shared by the systems: nobody may edit it
    store.despawn(store.net_ids[world.rows_of(DRONE)[:3]])
    assert rows(store, DRONE).tolist() == world.rows_of(DRONE).tolist()
    store["Body.kind"][store.row(me)] = PROJECTILE  # an in-place write is seen, too
    assert len(rows(store, PLAYER)) == 0 and rows(store, PROJECTILE).tolist() == [store.row(me)]
    assert rows.team(store) == world.rows_of(TEAM)[0]
    store["Body.kind"][store.row(me)] = PLAYER
    assert rows.living_players(store).tolist() == [store.row(me)]
    store["Health.hp"][store.row(me)] = 0  # downed: no longer a target
    assert len(rows.living_players(store)) == 0
    store["Health.hp"][store.row(me)] = PLAYER_HP
    assert len(rows.living_players(store)) == 1
    store.despawn(store.net_ids)  # an empty store has no living players either
    assert len(rows.living_players(store)) == 0 and len(rows(store, TEAM)) == 0


def test_kind_rows_at_is_a_slice_for_one_run_of_rows_and_the_rows_otherwise(
    make_world: World,
) -> None:
    world = make_world()
    store, rows = world.store, KindRows()
    players = [world.join(f"p{i}") for i in range(2)]
    world.step()  # wave 1: one run of drones after the team and the players
    drones = rows(store, DRONE)
    assert rows.at(store, DRONE) == slice(int(drones[0]), int(drones[-1]) + 1)
    assert rows.at(store, PROJECTILE).tolist() == []  # no rows: nothing to slice
    store["Body.kind"][int(drones[3])] = PROJECTILE  # a hole in the run
    assert rows.at(store, DRONE).tolist() == rows(store, DRONE).tolist()
    assert rows.at(store, PROJECTILE) == slice(int(drones[3]), int(drones[3]) + 1)
    store["Health.hp"][store.row(players[0])] = 0  # the first player is down
    living = store.row(players[1])
    assert rows.living_players_at(store) == slice(living, living + 1)
    store["Health.hp"][store.row(players[0])] = PLAYER_HP
    assert rows.living_players(store).tolist() == rows(store, PLAYER).tolist()


def test_systems_give_the_same_state_with_slices_or_row_lists(
    make_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The slice fast path (contiguous rows) against the general one (every selection a row
    # list): 300 ticks of four scripted players, with kills, contacts and waves, bit for bit.
    def run() -> dict[str, np.ndarray]:
        world = make_world("ROOMSEED")
        play(world, [world.join(f"p{i}") for i in range(4)], 300)
        assert world.team()[1] >= 2  # waves were cleared: every system path ran
        return world.snapshot()

    with_slices = run()
    monkeypatch.setattr(coop_systems, "_at", lambda rows: rows)
    with_rows = run()
    assert with_slices.keys() == with_rows.keys()
    for name in with_slices:
        assert with_slices[name].tobytes() == with_rows[name].tobytes(), name


def test_setup_makes_one_team_entity_and_no_wave_until_a_player_joins(make_world: World) -> None:
    world = make_world()
    world.step()
    assert len(world.rows_of(TEAM)) == 1 and world.team() == (0, 0)
    assert len(world.rows_of(DRONE)) == 0
    world.join("alice")
    world.step()
    assert world.team() == (0, 1) and len(world.rows_of(DRONE)) == wave_size(1)


def test_same_room_and_inputs_give_bit_identical_state(make_world: World) -> None:
    first, second = make_world("ROOMSEED"), make_world("ROOMSEED")
    for world in (first, second):
        players = [world.join(f"p{i}") for i in range(4)]
        play(world, players, 200)
    a, b = first.snapshot(), second.snapshot()
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].tobytes() == b[name].tobytes(), name
    other = make_world("OTHERSED")
    players = [other.join(f"p{i}") for i in range(4)]
    play(other, players, 5)
    same_tick = make_world("ROOMSEED")
    players = [same_tick.join(f"p{i}") for i in range(4)]
    play(same_tick, players, 5)
    drones_other = other.store["Body.pos"][other.rows_of(DRONE)]
    drones_same = same_tick.store["Body.pos"][same_tick.rows_of(DRONE)]
    assert not np.array_equal(drones_other, drones_same)  # the seed comes from the room id


def test_check_input_refuses_impossible_speed_and_fire_rate(make_world: World) -> None:
    world = make_world()
    me = world.join("alice")
    assert game.check_input(world.sim, me, Command(127, 0)) is None
    assert game.check_input(world.sim, me, Command(90, 90)) == "impossible speed"
    assert game.check_input(world.sim, me, Command(-128, 0)) == "impossible speed"
    world.step({me: Command(fire=True)})
    assert world.refusals == []
    assert len(world.rows_of(PROJECTILE)) == 1
    assert game.check_input(world.sim, me, Command(fire=True)) == "fire rate"
    world.store["Health.hp"][world.store.rows([me])[0]] = 0
    assert game.check_input(world.sim, me, Command(fire=True)) is None  # downed: ignored


def test_refused_inputs_are_counted_by_the_real_server_room() -> None:
    room = Room("HOOKROOM", "us-east", "coop", game)
    try:
        player = room.add_player("alice", b"x" * 32)
        row = room.store.rows([player.net_id])[0]
        start = room.store["Body.pos"][row].copy()
        player.inputs.push(1, encode_command(Command(-128, -128)))  # too fast
        room.step(1)
        assert room.ingestion.violations == 1
        row = room.store.rows([player.net_id])[0]
        assert np.array_equal(room.store["Body.pos"][row], start)  # stood still instead
        player.inputs.push(2, encode_command(Command(fire=True)))
        room.step(2)
        player.inputs.push(3, encode_command(Command(fire=True)))  # still cooling down
        room.step(3)
        assert room.ingestion.violations == 2
        assert player.inputs.last_input_seq == 3
        player.inputs.push(4, b"\x00\x00")  # undecodable: empty input, no violation
        room.step(4)
        assert (room.ingestion.undecodable, room.ingestion.violations) == (1, 2)
    finally:
        room.close()


def test_a_hit_drone_dies_and_the_team_scores(make_world: World) -> None:
    world = make_world()
    me = world.join("alice")
    world.step()  # wave 1
    drones = world.rows_of(DRONE)
    target = int(world.store.net_ids[drones[0]])
    # Park the player far from everything, then put one drone right in the line of fire.
    place(world, me, (0.0, 0.0))
    world.store["Body.pos"][world.rows_of(DRONE)] = (ARENA, ARENA)
    world.store["Body.pos"][world.store.rows([target])[0]] = (2.0, 0.0)
    score_before = world.team()[0]
    world.step({me: Command(aim=0, fire=True)})
    world.step({me: Command()})
    assert not world.store.contains([target])[0]
    assert world.team()[0] == score_before + SCORE_PER_KILL
    assert len(world.rows_of(PROJECTILE)) == 0  # the shot was spent on the hit


def test_drone_contact_damages_the_player_and_the_drone_explodes(make_world: World) -> None:
    world = make_world()
    me = world.join("alice")
    world.step()
    drones = world.rows_of(DRONE)
    kamikaze = int(world.store.net_ids[drones[0]])
    world.store["Body.pos"][drones] = (-ARENA, -ARENA)
    place(world, me, (10.0, 10.0))
    world.store["Body.pos"][world.store.rows([kamikaze])[0]] = (10.5, 10.0)
    world.step()
    row = world.store.rows([me])[0]
    assert world.store["Health.hp"][row] == PLAYER_HP - CONTACT_DAMAGE
    assert not world.store.contains([kamikaze])[0]
    assert world.team()[0] == 0  # explosions do not score


def test_clearing_a_wave_starts_a_bigger_one_and_heals(make_world: World) -> None:
    world = make_world()
    me, buddy = world.join("alice"), world.join("bob")
    for expected_wave in (1, 2, 3):
        world.step()
        assert world.team()[1] == expected_wave
        drones = world.rows_of(DRONE)
        assert len(drones) == wave_size(expected_wave)
        world.store["Health.hp"][world.store.rows([me, buddy])] = (50, 0)  # bob is downed
        world.store.despawn(world.store.net_ids[drones])  # as if all were shot
    world.step()
    assert world.team()[1] == 4
    assert world.store["Health.hp"][world.store.rows([me, buddy])].tolist() == [PLAYER_HP] * 2


def test_a_wiped_team_restarts_at_wave_one(make_world: World) -> None:
    world = make_world()
    players = [world.join(f"p{i}") for i in range(2)]
    world.step()
    world.store["Team.score"][world.rows_of(TEAM)[0]] = 500
    world.store["Team.wave"][world.rows_of(TEAM)[0]] = 7
    world.store["Health.hp"][world.store.rows(players)] = 0
    world.step()
    assert world.team() == (0, 1)
    assert len(world.rows_of(DRONE)) == wave_size(1)
    assert np.all(world.store["Health.hp"][world.store.rows(players)] == PLAYER_HP)


def test_score_saturates(make_world: World) -> None:
    world = make_world()
    me = world.join("alice")
    world.step()
    world.store["Team.score"][world.rows_of(TEAM)[0]] = MAX_SCORE - 1
    drones = world.rows_of(DRONE)
    world.store["Body.pos"][drones] = (ARENA, ARENA)
    place(world, me, (0.0, 0.0))
    world.store["Body.pos"][drones[0]] = (2.0, 0.0)
    world.step({me: Command(aim=0, fire=True)})
    world.step()
    assert world.team()[0] == MAX_SCORE


def test_four_scripted_players_for_300_ticks_stay_within_bounds(make_world: World) -> None:
    world = make_world()
    players = [world.join(f"p{i}") for i in range(4)]
    max_wave = 0
    for _ in range(30):
        play(world, players, 10)
        store = world.store
        kind, pos, hp = store["Body.kind"], store["Body.pos"], store["Health.hp"]
        assert np.all(np.abs(pos) <= ARENA)
        assert np.all((hp >= 0) & (hp <= 127))
        assert np.all(hp[kind == PLAYER] <= PLAYER_HP)
        assert (kind == DRONE).sum() <= MAX_DRONES
        assert (kind == PROJECTILE).sum() <= MAX_PROJECTILES
        assert (kind == PLAYER).sum() == 4 and (kind == TEAM).sum() == 1
        max_wave = max(max_wave, world.team()[1])
    assert world.refusals == []  # the bots respect the fire rate
    assert max_wave >= 2 and world.team()[0] > 0  # they clear waves and score


def test_prediction_replays_the_servers_player_step_bit_exactly(make_world: World) -> None:
    server = make_world("PREDICTS")
    players = [server.join(f"p{i}") for i in range(4)]
    play(server, players, 30)
    # The client starts from the server's state, as decoded from a snapshot...
    client = make_world("PREDICTS", authoritative=False)
    client.store.import_state(server.store.export_state())
    me = players[0]
    shots_at_import = len(client.rows_of(PROJECTILE))
    commands = [Command(127 * (i % 2), -60, i % 256, i % 7 == 0) for i in range(40)]
    for command in commands:
        server.step({me: command})
        client.step({me: command})  # the client's systems do nothing: authoritative=False
        server_row, client_row = server.store.rows([me])[0], client.store.rows([me])[0]
        for name in ("Body.pos", "Body.heading", "Weapon.cooldown"):
            assert (
                server.store[name][server_row].tobytes() == client.store[name][client_row].tobytes()
            ), name
    # Shots, drones and score are the server's: the client predicted none of them.
    assert len(client.rows_of(PROJECTILE)) == shots_at_import
    assert len(server.rows_of(PROJECTILE)) > 0
