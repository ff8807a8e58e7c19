"""dots: the smallest complete astranet game (a template to copy).

Each player is a dot moved by its input; a few wanderer dots bounce around the arena so there
is always something to replicate. Run it with ``astranet-server --game
astranet.examples.dots:game``.

Input blob (2 bytes): ``int8 dx, int8 dy`` — a direction scaled by 127. A vector longer than
127 is an impossible speed: the movement-sanity hook refuses it (the server counts it, applies
"stand still" instead, and kicks a player who keeps doing it).
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import ClassVar

import esper
import numpy as np

from astranet.ecs import ColumnStore, NetEntity, Quantized, Schema, replicated
from astranet.game import Game, InputError, SimContext
from astranet.systems import Stage, add_system

__all__ = ["ARENA", "SPEED", "Body", "DirectionInput", "Dots", "encode_input", "game"]

ARENA = 100.0  # the arena is [-ARENA, ARENA]^2 units
SPEED = 10.0  # units per second at full input
WANDERERS = 8
PLAYER, WANDERER = 0, 1
GRID = 512  # positions live on the 1/512 grid the snapshots carry (exact prediction)
_INPUT = struct.Struct("<bb")
# A unit vector scaled by 127 and rounded per component can grow by up to half a unit on each
# axis: |v| <= 127 + sqrt(2)/2. (90, 90), the rounding of a unit diagonal, must pass; a
# (-128, 0) or (127, 127) must not.
MAX_INPUT_NORM_SQUARED = (127 + math.sqrt(2) / 2) ** 2


@replicated
class Body:
    pos = Quantized(-4096.0, 4096.0, 1 / GRID, size=2)
    vel = Quantized(-64.0, 64.0, 1 / 256, size=2)
    kind = Quantized(0.0, 3.0, 1.0)


def encode_input(dx: float, dy: float) -> bytes:
    """The input blob for a direction with components in [-1, 1]."""
    return _INPUT.pack(round(max(-1.0, min(1.0, dx)) * 127), round(max(-1.0, min(1.0, dy)) * 127))


def snap(values: np.ndarray) -> np.ndarray:
    """Round to the replication grid, so the server's state is exactly what clients decode."""
    return np.round(values * GRID) / GRID


class WanderSystem(esper.Processor):
    """Moves every wanderer in one vectorised step and bounces it off the walls."""

    def process(self, sim: SimContext) -> None:
        store = sim.store
        wander = store["Body.kind"] == WANDERER
        if not wander.any():
            return
        pos, vel = store["Body.pos"], store["Body.vel"]
        moved = pos[wander] + vel[wander] * sim.dt_s
        outside = np.abs(moved) > ARENA
        new_vel = np.where(outside, -vel[wander], vel[wander])
        pos[wander] = snap(np.clip(moved, -ARENA, ARENA))
        vel[wander] = new_vel


class DirectionInput:
    """The dots input blob on a Game: decode (``encode_input``'s 2 bytes), idle, speed check.

    Mixed in before :class:`~astranet.game.Game` by every game that takes this blob (dots,
    cubes); its ``InputError`` names the game.
    """

    name: ClassVar[str]

    def decode_input(self, blob: bytes) -> tuple[int, int]:
        if len(blob) != _INPUT.size:
            raise InputError(f"{self.name} input is {_INPUT.size} bytes, got {len(blob)}")
        return _INPUT.unpack(blob)

    def empty_input(self) -> tuple[int, int]:
        return (0, 0)

    def check_input(self, sim: SimContext, net_id: int, command: tuple[int, int]) -> str | None:
        dx, dy = command
        if dx * dx + dy * dy > MAX_INPUT_NORM_SQUARED:
            return "impossible speed"
        return None


class Dots(DirectionInput, Game):
    name = "dots"
    schema = Schema(Body)

    def setup(self, sim: SimContext) -> None:
        rng = np.random.default_rng(zlib.crc32(sim.room_id.encode()))
        angles = rng.uniform(0, 2 * math.pi, WANDERERS)
        sim.store.spawn(
            WANDERERS,
            Body__pos=snap(rng.uniform(-ARENA / 2, ARENA / 2, (WANDERERS, 2))),
            Body__vel=np.stack([np.cos(angles), np.sin(angles)], axis=1) * SPEED / 2,
            Body__kind=WANDERER,
        )
        add_system(WanderSystem(), Stage.SIMULATE)

    def spawn_player(self, sim: SimContext, player_id: str) -> int:
        # A deterministic spot per player id, so tests and replays are reproducible.
        seed = zlib.crc32(player_id.encode())
        start = snap(np.array([(seed % 101) - 50.0, ((seed >> 8) % 101) - 50.0]) / 2)
        net_id = int(sim.store.spawn(1, Body__pos=start, Body__kind=PLAYER)[0])
        esper.create_entity(NetEntity(net_id))
        return net_id

    def apply_input(self, sim: SimContext, net_id: int, command: tuple[int, int]) -> None:
        move_avatar(sim.store, net_id, command, sim.dt_s)


def move_avatar(store: ColumnStore, net_id: int, command: tuple[int, int], dt_s: float) -> None:
    """One input step: shared verbatim by the server and the client's prediction."""
    rows = store.rows([net_id])
    direction = np.array(command, dtype=np.float64) / 127.0
    pos = store["Body.pos"]
    pos[rows] = snap(np.clip(pos[rows] + direction * SPEED * dt_s, -ARENA, ARENA))


game = Dots()
