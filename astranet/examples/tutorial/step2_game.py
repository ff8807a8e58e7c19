"""Tutorial step 2: "orbs" as an astranet :class:`~astranet.game.Game` the server can run.

The rules are step 1's; what is new is the contract with the server (docs/server.md, "The Game
interface"): ``setup`` once per room, ``spawn_player`` per joining player, and the input path
``decode_input`` -> ``check_input`` -> ``apply_input``, which the server calls once per input
frame and the client calls again to predict. Serve it with:

    astranet-server --game astranet.examples.tutorial.step2_game:game --db orbs.db

Input blob (2 bytes, little-endian): ``int8 dx, int8 dy``, the stick direction scaled by 127
(``encode_input(dx, dy)``). A vector longer than a full stick is refused by ``check_input``.
Limits: at most 4 players per room (the server's room capacity); 5 orbs per room.
Benchmark: none of its own; benchmarks/tick.py measures the same kind of column systems.
"""

from __future__ import annotations

import math
import struct
import zlib

import esper
import numpy as np

from astranet.ecs import NetEntity
from astranet.examples.tutorial.step0_single_player import ARENA, ORBS
from astranet.examples.tutorial.step1_columns import (
    ORB,
    PLAYER,
    SCHEMA,
    CollectSystem,
    move_player,
    snap,
)
from astranet.game import Game, InputError, SimContext
from astranet.systems import Stage, add_system

__all__ = ["MAX_STICK_SQUARED", "Orbs", "encode_input", "game"]

# --8<-- [start:input]
_INPUT = struct.Struct("<bb")  # int8 dx, int8 dy: a stick direction scaled by 127
# Rounding a unit diagonal to int8 can lengthen it by up to half a unit per axis, so (90, 90)
# must pass while (127, 127) (a 41 % speed hack) must not.
MAX_STICK_SQUARED = (127 + math.sqrt(2) / 2) ** 2


def encode_input(dx: float, dy: float) -> bytes:
    """The input blob for a stick direction with components in [-1, 1] (the client's side)."""
    return _INPUT.pack(round(max(-1.0, min(1.0, dx)) * 127), round(max(-1.0, min(1.0, dy)) * 127))


# --8<-- [end:input]


# --8<-- [start:game]
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
# --8<-- [end:game]
