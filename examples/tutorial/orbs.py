"""orbs as an astranet Game. Serve it: astranet-server --game orbs:game --db orbs.db"""

import math
import struct
import zlib

import esper
import numpy as np
from orbs_columns import ORB, PLAYER, SCHEMA, CollectSystem, move_player, snap
from orbs_single import ARENA, ORBS

from astranet.ecs import NetEntity
from astranet.game import Game, InputError, SimContext
from astranet.systems import Stage, add_system

_INPUT = struct.Struct("<bb")  # int8 dx, int8 dy: a stick direction scaled by 127
# Rounding a unit diagonal to int8 can lengthen it by up to half a unit per axis, so (90, 90)
# must pass while (127, 127) (a 41 % speed hack) must not.
MAX_STICK_SQUARED = (127 + math.sqrt(2) / 2) ** 2


def encode_input(dx: float, dy: float) -> bytes:
    """The input blob for a stick direction with components in [-1, 1] (the client's side)."""
    return _INPUT.pack(round(max(-1.0, min(1.0, dx)) * 127), round(max(-1.0, min(1.0, dy)) * 127))


class Orbs(Game):
    name = "orbs"
    schema = SCHEMA

    def setup(self, sim: SimContext) -> None:
        # Seeded by the room id: the same room always starts the same way (tests, replays).
        rng = np.random.default_rng(zlib.crc32(sim.room_id.encode()))
        sim.store.spawn(ORBS, Body__pos=snap(rng.uniform(-ARENA, ARENA, (ORBS, 2))), Body__kind=ORB)
        add_system(CollectSystem(rng), Stage.SIMULATE)

    def spawn_player(self, sim: SimContext, player_id: str) -> int:
        net_id = int(sim.store.spawn(1, Body__kind=PLAYER)[0])
        esper.create_entity(NetEntity(net_id))  # what the default despawn_player looks for
        return net_id

    def decode_input(self, blob: bytes) -> tuple[int, int]:
        if len(blob) != _INPUT.size:
            raise InputError(f"orbs input is {_INPUT.size} bytes, got {len(blob)}")
        return _INPUT.unpack(blob)

    def empty_input(self) -> tuple[int, int]:
        return (0, 0)  # stand still

    def check_input(self, sim: SimContext, net_id: int, command: tuple[int, int]) -> str | None:
        dx, dy = command
        return "impossible speed" if dx * dx + dy * dy > MAX_STICK_SQUARED else None

    def apply_input(self, sim: SimContext, net_id: int, command: tuple[int, int]) -> None:
        move_player(sim.store, net_id, np.array(command, dtype=np.float64) / 127, sim.dt_s)


game = Orbs()
