"""coop shots are validated against the drones as the shooter saw them (sim.rewind)."""

from __future__ import annotations

import math

import numpy as np

from astranet.examples.coop import DRONE, PROJECTILE, encode_input, game
from astranet.server.room import Room

DRONE_HP = 10


def _room_with_one_drone() -> tuple[Room, int, int]:
    room = Room("LAGCOMP1", "us-east", "coop", game)
    player = room.add_player("shooter", b"h")
    room.step(0)  # wave 1 spawns
    store = room.store
    drones = store.net_ids[store["Body.kind"] == DRONE]
    store.despawn(drones[1:])
    drone = int(drones[0])
    for tick in range(1, 12):  # the drone sweeps sideways, 0.5 units a tick
        row = store.rows([drone])
        store["Body.pos"][row] = (12.0, -3.0 + 0.5 * tick)
        store["Health.hp"][row] = DRONE_HP
        room.step(tick)
    return room, player.net_id, drone


def _fire_at(room: Room, shooter: int, target: np.ndarray, view_tick: float | None) -> None:
    store = room.store
    origin = store["Body.pos"][store.rows([shooter])][0].astype(np.float64)
    aim = math.atan2(*(target - origin)[::-1])
    room.players["shooter"].inputs.push(
        room.tick + 1, encode_input(0, 0, aim, fire=True), view_tick
    )
    room.step(room.tick + 1)


def _pos_at(room: Room, drone: int, tick: int) -> np.ndarray:
    snap = next(s for s in room.history if s.tick == tick)
    view = room.sim.rewind(float(snap.tick))
    return view.row(drone)[view.layout.slices["Body.pos"]]


def test_a_shot_at_where_the_drone_was_drawn_hits_it() -> None:
    room, shooter, drone = _room_with_one_drone()
    seen = _pos_at(room, drone, 4)  # ~230 ms ago, 3.5 units from where it is now
    _fire_at(room, shooter, seen, view_tick=4.0)
    store = room.store
    assert store["Health.hp"][store.rows([drone])][0] == DRONE_HP - 1
    assert not (store["Body.kind"] == PROJECTILE).any()  # spent on the hit


def test_without_a_view_the_same_shot_flies_as_a_projectile_and_does_not_hit_now() -> None:
    room, shooter, drone = _room_with_one_drone()
    seen = _pos_at(room, drone, 4)
    _fire_at(room, shooter, seen, view_tick=None)
    store = room.store
    assert store["Health.hp"][store.rows([drone])][0] == DRONE_HP
    assert (store["Body.kind"] == PROJECTILE).sum() == 1


def test_a_view_beyond_the_cap_is_clamped_so_the_old_position_is_missed() -> None:
    room, shooter, drone = _room_with_one_drone()
    seen = _pos_at(room, drone, 1)
    room.sim.rewinder.max_rewind_ms = 100.0  # 3 ticks: tick 1 is out of reach
    _fire_at(room, shooter, seen, view_tick=1.0)
    store = room.store
    assert store["Health.hp"][store.rows([drone])][0] == DRONE_HP
    assert room.sim.rewinder.clamped == 1


def test_a_new_wave_is_announced_to_every_player_as_an_event() -> None:
    import struct

    from astranet.examples.coop.systems import WAVE_EVENT

    room = Room("WAVEEVNT", "us-east", "coop", game)
    a, b = room.add_player("a", b"h"), room.add_player("b", b"h")
    room.step(0)  # wave 1 starts with the first tick that has players
    for player in (a, b):
        due = player.outbox.due(1, 0)
        assert [(e.type, struct.unpack("<H", e.data)[0]) for e in due] == [(WAVE_EVENT, 1)]
