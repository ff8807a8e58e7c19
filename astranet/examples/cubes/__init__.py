"""cubes: the server-load benchmark game (benchmarks/server_load.py).

Each room holds ``entities`` scenery cubes in a 1000 x 1000 box plus one avatar cube per
player. A fixed subset of the scenery -- ``moving_fraction`` of it, evenly spread (every 10th
cube at 0.1) -- moves every tick (``pos += vel * dt``, bouncing off the walls) in one
vectorised step; the rest never moves, so snapshots carry only the moving cubes and the
avatars. Each player's input moves their own avatar, with the same blob as astranet.examples.dots.

Choosing N and the fraction (the server loads a game as ``--game MODULE:ATTR``):

* ``astranet.examples.cubes:game`` reads ``ASTRANET_CUBES_ENTITIES`` (default 1000) and
  ``ASTRANET_CUBES_MOVING_FRACTION`` (default 0.1) from the environment **at import**, so a
  server subprocess is configured by its environment;
* ``astranet.examples.cubes:game_100`` is the fixed N=100, 10 % variant (the 1,000-client scenario);
* or build ``Cubes(entities=..., moving_fraction=...)`` in your own module.

Input blob (2 bytes): ``int8 dx, int8 dy`` -- a direction scaled by 127 (``encode_input``).
A vector longer than 127 is an impossible speed; ``check_input`` refuses it (movement sanity).
Decoding and that check are dots' :class:`~astranet.examples.dots.DirectionInput`.
Replicated: ``Cube.pos`` only, on a 1/64-unit grid (16 bits per axis). Scenery velocities are
server-only state held by the room's :class:`BounceSystem` (clients see positions).

Limits: ``MAX_CUBES`` scenery cubes per room. Benchmark: benchmarks/server_load.py
(docs/benchmarks.md, "Server load").
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Mapping

import esper
import numpy as np

from astranet.ecs import ColumnStore, NetEntity, Quantized, Schema, replicated
from astranet.errors import ConfigurationError
from astranet.examples.dots import DirectionInput, encode_input
from astranet.game import Game, SimContext
from astranet.systems import Stage, add_system

__all__ = [
    "BOX",
    "ENTITIES_ENV",
    "GRID",
    "MOVING_FRACTION_ENV",
    "BounceSystem",
    "Cube",
    "Cubes",
    "encode_input",
    "game",
    "game_100",
    "moving_rows",
]

BOX = 1000.0  # the box is [0, BOX]^2 units
GRID = 64  # positions replicate on a 1/64 grid: 64,000 codes per axis = 16 bits
AVATAR_SPEED = 100.0  # units per second at full input (a tenth of the box per second)
MAX_SCENERY_SPEED = 50.0  # units per second; 1.7 units (107 codes) per tick at 30 Hz
# 100k cubes is far beyond what one 30 Hz room can replicate; a typo in the env var (an extra
# zero or two) should fail at start-up, not exhaust memory.
MAX_CUBES = 100_000
ENTITIES_ENV = "ASTRANET_CUBES_ENTITIES"
MOVING_FRACTION_ENV = "ASTRANET_CUBES_MOVING_FRACTION"


@replicated
class Cube:
    pos = Quantized(0.0, BOX, 1 / GRID, size=2)


def snap(values: np.ndarray) -> np.ndarray:
    """Round to the replication grid, so the server's state is exactly what clients decode."""
    return np.round(values * GRID) / GRID


def moving_rows(entities: int, moving_fraction: float) -> np.ndarray:
    """Indices of the moving scenery cubes: ``round(entities * fraction)`` evenly spread."""
    count = round(entities * moving_fraction)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    return (np.arange(count, dtype=np.int64) * entities) // count


class BounceSystem(esper.Processor):
    """Stage.SIMULATE: moves the moving scenery cubes one step and bounces them off the walls.

    Holds the cubes' net ids and velocities (server-only state). Their rows are looked up again
    only after a structural change of the store (``ColumnStore.generation``: player spawns and
    despawns may shift rows); evenly spaced rows (the usual layout) are a strided slice, so
    the step reads and writes a view instead of gathering. The step works in place in
    preallocated buffers: no array is allocated per tick, the step ``velocities * dt`` is
    kept until a cube bounces, and a tick where no cube reaches a wall skips the bounce
    arithmetic.
    """

    def __init__(self, net_ids: np.ndarray, velocities: np.ndarray) -> None:
        self.net_ids = net_ids
        self._velocities = np.array(velocities, dtype=np.float64)  # (n, 2), units per second
        self._rows: np.ndarray | slice = slice(0, 0)
        # The store and its generation the rows were looked up for (None: not yet).
        self._layout_store: ColumnStore | None = None
        self._layout_generation = -1
        self._moved = np.zeros(self._velocities.shape)
        self._below = np.zeros(self._velocities.shape, dtype=bool)
        self._above = np.zeros(self._velocities.shape, dtype=bool)
        # velocities * dt_s, the step of a tick: the same product every tick until a cube
        # bounces (or dt_s changes), so it is made again only then. None: to be made.
        self._per_tick = np.zeros(self._velocities.shape)
        self._per_tick_dt: float | None = None

    @property
    def velocities(self) -> np.ndarray:
        """Units per second, ``(n, 2)`` (read-only: the per-tick step is cached from it)."""
        view = self._velocities.view()
        view.flags.writeable = False
        return view

    def process(self, sim: SimContext) -> None:
        if len(self.net_ids) == 0:
            return
        store = sim.store
        if store is not self._layout_store or store.generation != self._layout_generation:
            self._rows = _as_slice(store.rows(self.net_ids))
            self._layout_store, self._layout_generation = store, store.generation
        pos = store["Cube.pos"]
        moved, below, above, vel = self._moved, self._below, self._above, self._velocities
        if self._per_tick_dt != sim.dt_s:
            np.multiply(vel, sim.dt_s, out=self._per_tick)
            self._per_tick_dt = sim.dt_s
        np.add(pos[self._rows], self._per_tick, out=moved)  # float32 + float64: pos + vel * dt
        # Most ticks no cube reaches a wall: two reductions say so, instead of the eight calls
        # of the bounce below (each ~1 us at this size). fmin/fmax skip NaN, so a NaN cannot
        # hide a cube past a wall; NaN itself is left alone on both paths.
        if np.fmin.reduce(moved, axis=None) >= 0.0 and np.fmax.reduce(moved, axis=None) <= BOX:
            pos[self._rows] = moved
            return
        # Reflect off both walls: a cube past a wall comes back by the distance it overshot.
        np.less(moved, 0.0, out=below)
        np.greater(moved, BOX, out=above)
        np.negative(moved, out=moved, where=below)
        np.subtract(2 * BOX, moved, out=moved, where=above)
        np.logical_or(below, above, out=below)
        np.negative(vel, out=vel, where=below)
        self._per_tick_dt = None  # velocities flipped: the next tick makes its step again
        np.maximum(moved, 0.0, out=moved)  # clip to the box (a huge overshoot)
        np.minimum(moved, BOX, out=moved)
        pos[self._rows] = moved


def _as_slice(rows: np.ndarray) -> np.ndarray | slice:
    """``rows`` as a slice when they are evenly spaced and increasing, else unchanged."""
    if len(rows) == 0:
        return slice(0, 0)
    if len(rows) == 1:
        return slice(int(rows[0]), int(rows[0]) + 1)
    stride = int(rows[1] - rows[0])
    if stride > 0 and bool(np.all(np.diff(rows) == stride)):
        return slice(int(rows[0]), int(rows[-1]) + 1, stride)
    return rows


class Cubes(DirectionInput, Game):
    """N scenery cubes (a fraction moving) plus one avatar per player."""

    name = "cubes"
    schema = Schema(Cube)

    def __init__(self, entities: int = 1000, moving_fraction: float = 0.1) -> None:
        if type(entities) is not int or not 0 <= entities <= MAX_CUBES:
            raise ConfigurationError(f"cubes entities: expected 0..{MAX_CUBES}, got {entities!r}")
        if not (math.isfinite(moving_fraction) and 0.0 <= moving_fraction <= 1.0):
            raise ConfigurationError(
                f"cubes moving fraction: expected 0..1, got {moving_fraction!r}"
            )
        self.entities = entities
        self.moving_fraction = float(moving_fraction)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Cubes:
        """Read N and the moving fraction from the environment (module docstring)."""
        env = os.environ if environ is None else environ
        raw_n = env.get(ENTITIES_ENV) or "1000"
        raw_f = env.get(MOVING_FRACTION_ENV) or "0.1"
        try:
            entities = int(raw_n)
        except ValueError:
            raise ConfigurationError(
                f"{ENTITIES_ENV}: expected an integer, got {raw_n!r}"
            ) from None
        try:
            fraction = float(raw_f)
        except ValueError:
            raise ConfigurationError(
                f"{MOVING_FRACTION_ENV}: expected a number 0..1, got {raw_f!r}"
            ) from None
        return cls(entities, fraction)

    def setup(self, sim: SimContext) -> None:
        # Deterministic per room id, so runs and replays are reproducible.
        rng = np.random.default_rng(zlib.crc32(sim.room_id.encode()))
        ids = sim.store.spawn(
            self.entities, Cube__pos=snap(rng.uniform(0.0, BOX, (self.entities, 2)))
        )
        moving = moving_rows(self.entities, self.moving_fraction)
        angles = rng.uniform(0.0, 2 * math.pi, len(moving))
        speeds = rng.uniform(MAX_SCENERY_SPEED / 5, MAX_SCENERY_SPEED, len(moving))
        velocities = np.stack([np.cos(angles), np.sin(angles)], axis=1) * speeds[:, None]
        add_system(BounceSystem(ids[moving].copy(), velocities), Stage.SIMULATE)

    def spawn_player(self, sim: SimContext, player_id: str) -> int:
        seed = zlib.crc32(player_id.encode())
        start = snap(np.array([seed % 1000, (seed >> 10) % 1000], dtype=np.float64))
        net_id = int(sim.store.spawn(1, Cube__pos=start)[0])
        esper.create_entity(NetEntity(net_id))
        return net_id

    def apply_input(self, sim: SimContext, net_id: int, command: tuple[int, int]) -> None:
        move_avatar(sim.store, net_id, command, sim.dt_s)


def move_avatar(store: ColumnStore, net_id: int, command: tuple[int, int], dt_s: float) -> None:
    """One input step, shared by the server and a client's prediction.

    Scalar Python math on one row: numpy's per-call overhead on a 2-element array was most of
    the cost of an input (benchmarks/server_load.py profile). ``round`` rounds half to even,
    as ``np.round`` does, so the grid is the one the snapshots carry.
    """
    avatar = store["Cube.pos"][store.row(net_id)]  # a view of the one row
    x, y = avatar.tolist()  # one call for both floats
    step = AVATAR_SPEED * dt_s / 127.0
    x += command[0] * step
    y += command[1] * step
    # Clamped to the box as min(max(v, 0), BOX) would (NaN and -0.0 pass through alike),
    # with comparisons instead of four builtin calls.
    x = 0.0 if x < 0.0 else BOX if x > BOX else x
    y = 0.0 if y < 0.0 else BOX if y > BOX else y
    # Two scalar stores: numpy's fast path, where a tuple goes through sequence conversion.
    avatar[0] = round(x * GRID) / GRID
    avatar[1] = round(y * GRID) / GRID


game = Cubes.from_environ()
game_100 = Cubes(100, 0.1)
