"""coop: the replicated components, entity kinds, arena and grids shared by server and client.

Every entity of a room is one row of the :class:`~astranet.ecs.ColumnStore`, and every row has
every column; what an entity *is* comes from one column, ``Body.kind`` (player, drone,
projectile, team). Systems select rows with a mask (``kind == DRONE``) and work on whole
columns, so there is one structure to spawn, despawn and replicate, and no per-kind stores to
keep in step. Columns an entity does not use stay 0: after the spawn they cost nothing in a
delta, and at spawn only their bit width (see the budget below).

The game keeps *all* of its state in these columns (including the player's weapon cooldown and
the team's score and wave): nothing lives on the Python game object, so one ``game`` serves any
number of rooms, a checkpoint of the store (``export_state``) is a complete save, and the
client's prediction sees exactly the state the server used.

Bits per spawned row (the cost of a new drone or projectile in a snapshot):
``u32 id + pos 2x13 + kind 2 + heading 8 + hp 7 + cooldown 4 + score 20 + wave 10 = 109 bits``.
A moving drone costs about 2x4 bits of position delta per tick plus a heading change now and
then (widths are chosen per payload by the codec).

Limits: the arena is ``[-ARENA, ARENA]^2`` units inside the ``[-64, 64)`` position range;
score saturates at ``MAX_SCORE``, waves at ``MAX_WAVE``, hit points at 127.
Benchmark: benchmarks/coop_tick.py.
"""

from __future__ import annotations

import numpy as np

from astranet.ecs import Angle, Quantized, Schema, replicated
from astranet.ecs import quantize as q

__all__ = [
    "AIM_BITS",
    "ARENA",
    "DRONE",
    "GRID",
    "MAX_SCORE",
    "MAX_WAVE",
    "PLAYER",
    "PROJECTILE",
    "SCHEMA",
    "TEAM",
    "Body",
    "Health",
    "Team",
    "Weapon",
    "snap_finite_turns",
    "snap_heading",
    "snap_pos",
]

ARENA = 60.0  # half-size of the square arena, in units
# Every position lives on the 1/64 grid the snapshots carry: the server's state is exactly what
# clients decode, so predicting one's own avatar with the same function is bit-exact. 1/64 unit
# is far below what a player can see at arena scale.
GRID = 64
# 256 aim steps (the input's uint8 aim) = 8-bit headings: an aimed shot's heading is the aim.
AIM_BITS = 8
MAX_SCORE = (1 << 20) - 1  # 20 bits: a million points is many hours of play
MAX_WAVE = 1023  # 10 bits: wave sizes stop growing at wave 75 anyway

# Entity kinds (Body.kind codes, 2 bits).
PLAYER, DRONE, PROJECTILE, TEAM = 0, 1, 2, 3


@replicated
class Body:
    # hi = 64 - 1/64 keeps the code count at 2**13 (13 bits, not 14, per coordinate).
    pos = Quantized(-64.0, 64.0 - 1 / GRID, 1 / GRID, size=2)
    kind = Quantized(0.0, 3.0, 1.0)
    heading = Angle(bits=AIM_BITS)  # players: aim; drones: facing; projectiles: direction


@replicated
class Health:
    hp = Quantized(0.0, 127.0, 1.0)  # 0 on a player means "downed" (revived next wave)


@replicated
class Weapon:
    # Inputs until the player may fire again; counted in inputs, not ticks, so it is part of
    # the player's own deterministic step (see astranet/examples/coop/input.py).
    cooldown = Quantized(0.0, 15.0, 1.0)


@replicated
class Team:
    # Only the single TEAM row uses these.
    score = Quantized(0.0, float(MAX_SCORE), 1.0)
    wave = Quantized(0.0, float(MAX_WAVE), 1.0)


SCHEMA = Schema(Body, Health, Weapon, Team)  # field order is part of the wire format


def snap_pos(values: np.ndarray) -> np.ndarray:
    """Round positions to the replication grid (float64 in, float64 out)."""
    # rint is what np.round does at 0 decimals (half to even), minus its Python wrapper.
    return np.rint(np.multiply(values, GRID, dtype=np.float64)) / GRID


# The 256 headings snap_heading can return, by code (what dequantize_angle gives for each),
# plus code 256 again as code 0: a full turn rounds up to 256, which quantize_angle's remainder
# makes 0, and the extra entry does that wrap inside the take() (one numpy call fewer).
_HEADINGS = q.dequantize_angle(np.arange((1 << AIM_BITS) + 1) & ((1 << AIM_BITS) - 1), AIM_BITS)


_TURN = 2.0 * np.pi
_AIM_CODES = 1 << AIM_BITS


def snap_heading(radians: np.ndarray) -> np.ndarray:
    """Round headings (an array) to the 8-bit replication grid, wrapped to [-pi, pi) (float32
    out): ``dequantize_angle(quantize_angle(radians))``, what clients decode.

    The arithmetic of ``quantize_angle`` written out (the same float64 operations in the same
    order, non-finite angles as angle 0), minus its wrappers: every drone's heading goes
    through here every tick, and at room sizes the calls are the cost.
    """
    turns = np.divide(radians, _TURN, dtype=np.float64)
    finite = np.isfinite(turns)  # not a sum: +inf + -inf warns from inside the reduce
    if not finite.all():
        turns[~finite] = 0.0
    return snap_finite_turns(turns)


def snap_finite_turns(turns: np.ndarray) -> np.ndarray:
    """The rest of :func:`snap_heading` for float64 ``turns`` (radians / 2 pi) known to be
    finite, e.g. from ``arctan2`` of finite offsets: skips the finiteness check's two calls.
    Overwrites ``turns``."""
    turns -= np.floor(turns)
    turns *= _AIM_CODES
    np.rint(turns, out=turns)
    # turns is now 0..256 (a full turn rounds up to 256): _HEADINGS maps 256 to code 0's.
    return _HEADINGS.take(turns.astype(np.intp))
