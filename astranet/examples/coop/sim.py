"""coop simulation core: pure vectorised functions over position/heading arrays, plus the one
player step shared by the server and the client's prediction.

Operations: :func:`step_avatar` (one input of one player: move, aim, weapon cooldown),
:func:`chase` (every drone moves toward its nearest living player), :func:`advance_projectiles`,
:func:`resolve_hits` (projectiles vs drones), :func:`resolve_contacts` (drones vs players),
:func:`wave_size` / :func:`drone_hp_for_wave` / :func:`wave_spawn_positions` (waves).

Goals: no per-entity Python loop (pairwise work is numpy broadcasting); determinism: every
function is a pure function of its arguments (randomness comes from a generator seeded by
``(room seed, wave)``, so nothing random is stored and a restored checkpoint continues
identically); positions and headings come back snapped to the replication grids, so the server
simulates exactly the values its clients decode. :func:`step_avatar` reads and writes only the
player's own row, which is what makes client prediction of the local player exact.
Limits: pairwise matrices are computed in chunks of at most ``MAX_PAIR_CELLS`` cells;
``MAX_DRONES`` and ``MAX_PROJECTILES`` bound the room (enforced by the systems and the game).
Benchmark: benchmarks/coop_tick.py.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from astranet.ecs import ColumnStore
from astranet.examples.coop.components import (
    ARENA,
    GRID,
    snap_finite_turns,
    snap_heading,
    snap_pos,
)
from astranet.examples.coop.input import Command

__all__ = [
    "CONTACT_DAMAGE",
    "CONTACT_RADIUS",
    "DRONES_PER_WAVE",
    "DRONE_SPEED",
    "FIRE_INTERVAL_INPUTS",
    "HIT_RADIUS",
    "MAX_DRONES",
    "MAX_DRONE_HP",
    "MAX_PAIR_CELLS",
    "MAX_PROJECTILES",
    "PLAYER_HP",
    "PLAYER_SPEED",
    "PROJECTILE_SPEED",
    "SCORE_PER_KILL",
    "advance_projectiles",
    "chase",
    "drone_hp_for_wave",
    "drone_speeds",
    "hitscan",
    "nearest",
    "resolve_combat",
    "resolve_contacts",
    "resolve_hits",
    "room_seed",
    "step_avatar",
    "wave_size",
    "wave_spawn_positions",
]

PLAYER_SPEED = 12.0  # units/s at full input: crosses the arena in 10 s
PLAYER_HP = 100
DRONE_SPEED = 5.0  # units/s, mean; each drone gets 0.75..1.25 of it (drone_speeds)
PROJECTILE_SPEED = 30.0  # 1 unit per 30 Hz tick: never skips a HIT_RADIUS circle
# One shot every 6 inputs = 5 shots/s at 30 Hz. Counted in inputs, not ticks, because inputs
# are the player's own clock: bursts of late inputs neither gain nor lose shots.
FIRE_INTERVAL_INPUTS = 6
HIT_RADIUS = 1.0  # projectile centre to drone centre
CONTACT_RADIUS = 1.2  # drone centre to player centre
CONTACT_DAMAGE = 10  # a drone explodes on contact: ten contacts down a player
SCORE_PER_KILL = 10
DRONES_PER_WAVE = 8  # wave k brings 8k drones ...
MAX_DRONES = 600  # ... up to 600 (wave 75 onwards): what a 30 Hz tick and its snapshots carry
MAX_DRONE_HP = 10
# Shots alive at once per room: 4 players x 5 shots/s x 4 s of flight is 80, so 256 is only
# reached by a runaway; a shot fired at the cap is lost (its cooldown is still spent).
MAX_PROJECTILES = 256
# Cells of one pairwise distance matrix (float64): 2**18 cells = 2 MiB, above the
# MAX_PROJECTILES x MAX_DRONES = 153,600 a room normally needs, so one chunk suffices.
MAX_PAIR_CELLS = 1 << 18
# The larger of the two squared radii: a pair farther than this neither hits nor touches.
_REACH_SQ = max(HIT_RADIUS * HIT_RADIUS, CONTACT_RADIUS * CONTACT_RADIUS)


def room_seed(room_id: str) -> int:
    """The room's random seed: a pure function of its id, so a restart reproduces it."""
    return zlib.crc32(room_id.encode())


# -- players ---------------------------------------------------------------------------------


def step_avatar(store: ColumnStore, net_id: int, command: Command, dt_s: float) -> bool:
    """Apply one input to one player; returns True when it fired a shot.

    Shared verbatim by the server (``Coop.apply_input``) and the client's prediction: it reads
    and writes only this player's row (position, heading, cooldown; hp is read), so the result
    depends on nothing the client cannot see. A downed player (hp 0) does nothing.

    Scalar Python on one row (numpy's per-call overhead on 2-element arrays was most of an
    input's cost), computing exactly what the vectorised grid helpers give: the same float64
    operations in the same order, ``round`` (half to even, as ``np.round``) keeping the sign
    of a zero, and headings from a table built by :func:`snap_heading` itself.
    """
    row = store.row(net_id)
    if store["Health.hp"][row] <= 0:
        return False
    pos = store["Body.pos"]
    step = PLAYER_SPEED * dt_s
    x = min(max(float(pos[row, 0]) + command.move_x / 127.0 * step, -ARENA), ARENA)
    y = min(max(float(pos[row, 1]) + command.move_y / 127.0 * step, -ARENA), ARENA)
    pos[row, 0] = _snap_scalar(x)  # ARENA is on the grid: stays inside
    pos[row, 1] = _snap_scalar(y)
    store["Body.heading"][row] = _AIM_HEADINGS[command.aim % 256]
    cooldown = store["Weapon.cooldown"]
    left = float(cooldown[row])
    fired = bool(command.fire) and left == 0
    cooldown[row] = FIRE_INTERVAL_INPUTS - 1 if fired else max(left - 1.0, 0.0)
    return fired


def _snap_scalar(value: float) -> float:
    """:func:`snap_pos` of one float (np.round keeps the sign of a zero result; round does not)."""
    return math.copysign(round(value * GRID) / GRID, value)


# The heading of each aim byte, as snap_heading(aim_radians) gives it (float32).
_AIM_HEADINGS: tuple[float, ...] = tuple(
    snap_heading(np.array([Command(aim=aim).aim_radians for aim in range(256)])).tolist()
)


# -- drones ----------------------------------------------------------------------------------


def drone_speeds(net_ids: np.ndarray) -> np.ndarray:
    """Per-drone speed (float64) from a hash of its net id: the swarm spreads out instead of
    moving as one blob, with no extra column to store or replicate."""
    mixed = (np.asarray(net_ids, dtype=np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFF)
    return DRONE_SPEED * (0.75 + 0.5 * mixed.astype(np.float64) / 65536.0)


_SMALLEST_POSITIVE = float(np.nextafter(0.0, 1.0))  # 5e-324, a subnormal
_TURN = 2.0 * math.pi  # radians per turn, as snap_heading divides by


def _sum_sq(offsets: np.ndarray) -> np.ndarray:
    """Squared length over the last axis (size 2): ``x*x + y*y``, the same float64 operations
    as ``np.einsum("...k,...k->...", o, o)``, and faster at every size (a reduction over a
    2-long axis is slow for large arrays, einsum's call overhead dominates small ones)."""
    x, y = offsets[..., 0], offsets[..., 1]
    return x * x + y * y


def chase(
    drone_pos: np.ndarray, speeds: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Move each drone ``speeds`` (units this tick, >= 0) toward its nearest target.

    ``drone_pos`` (D, 2), ``speeds`` (D,), ``targets`` (P, 2) with P small (living players).
    Returns snapped positions (D, 2) and headings (D,). With no target the drones stay put.
    """
    # The store's float32 columns are not converted first: the subtraction casts both sides
    # to float64 (dtype=), every later operation has a float64 operand (the same numbers).
    pos = np.asarray(drone_pos).reshape(-1, 2)
    if len(pos) == 0 or len(targets) == 0:
        return snap_pos(pos), np.zeros(len(pos), dtype=np.float32)
    offsets = np.subtract(
        np.asarray(targets)[None, :, :], pos[:, None, :], dtype=np.float64
    )  # (D, P, 2)
    dist_sq = _sum_sq(offsets)
    nearest = dist_sq.argmin(axis=1)  # ties go to the lowest player row: deterministic
    # Each drone's (drone, nearest target) pair as a flat index: one take() gathers the pair
    # (fancy indexing by rows and columns costs several times its call overhead).
    n_targets = dist_sq.shape[1]
    pair = np.arange(0, dist_sq.size, n_targets) + nearest
    to_target = offsets.reshape(-1, 2).take(pair, axis=0)
    dist = np.sqrt(dist_sq.take(pair))  # the nearest one's distance
    step = np.minimum(speeds, dist)  # never overshoot the target
    # A drone on its target has dist 0 and (speeds >= 0) step 0: dividing by the smallest
    # positive float instead of 0 gives it scale 0, every other drone step / dist exactly.
    scale = step / np.maximum(dist, _SMALLEST_POSITIVE)
    moved = pos + to_target * scale[:, None]
    np.maximum(moved, -ARENA, out=moved)
    np.minimum(moved, ARENA, out=moved)
    # snap_heading's arithmetic: arctan2 of finite offsets is finite, so its check is skipped.
    turns = np.arctan2(to_target[:, 1], to_target[:, 0])
    turns /= _TURN
    return snap_pos(moved), snap_finite_turns(turns)


def wave_size(wave: int) -> int:
    """Drones in wave ``wave`` (1-based)."""
    return int(min(DRONES_PER_WAVE * max(wave, 0), MAX_DRONES))


def drone_hp_for_wave(wave: int) -> int:
    """Hit points of each drone of ``wave``: one more every three waves."""
    return int(min(1 + max(wave - 1, 0) // 3, MAX_DRONE_HP))


def wave_spawn_positions(seed: int, wave: int, n: int) -> np.ndarray:
    """``n`` snapped spawn points on the arena edge for ``wave``, reproducible from the seed."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, max(wave, 0)])
    side = rng.integers(0, 4, n)  # 0 west, 1 east, 2 south, 3 north
    along = rng.uniform(-ARENA, ARENA, n)
    x = np.where(side == 0, -ARENA, np.where(side == 1, ARENA, along))
    y = np.where(side == 2, -ARENA, np.where(side == 3, ARENA, along))
    return snap_pos(np.stack([x, y], axis=1))


# -- projectiles and combat ------------------------------------------------------------------


def advance_projectiles(
    pos: np.ndarray, heading: np.ndarray, dt_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Move projectiles one tick along their heading; returns (snapped positions, still
    inside the arena mask). Projectiles have no lifetime: the arena wall ends them."""
    start = np.asarray(pos).reshape(-1, 2)
    # (cos, sin) columns, computed in float64 (dtype=) from the float32 headings; cheaper
    # than np.stack. The float32 start meets them as float64 in the addition.
    direction = np.empty((len(start), 2))
    np.cos(heading, out=direction[:, 0], dtype=np.float64)
    np.sin(heading, out=direction[:, 1], dtype=np.float64)
    direction *= PROJECTILE_SPEED * dt_s
    moved = snap_pos(start + direction)
    extent = np.abs(moved)
    # The larger |coordinate| per row: max(axis=1) over 2 columns costs ~3 elementwise calls.
    inside = np.maximum(extent[:, 0], extent[:, 1]) <= ARENA
    return moved, inside


def nearest(points: np.ndarray, origin: np.ndarray) -> np.ndarray | None:
    """The row of ``points`` ``(n, 2)`` nearest to ``origin``, or None when there is none.

    The bots' and the window's "aim at the nearest drone", in one place.
    """
    if len(points) == 0:
        return None
    offsets = np.asarray(points, dtype=np.float64) - origin
    return points[int(_sum_sq(offsets).argmin())]


def _nearest_within(
    sources: np.ndarray, sinks: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """For each source, whether a sink lies within ``radius`` and the nearest such sink's
    index (meaningful only where found). Chunked so no matrix exceeds MAX_PAIR_CELLS."""
    if len(sources) == 0 or len(sinks) == 0:
        return np.zeros(len(sources), dtype=bool), np.zeros(len(sources), dtype=np.int64)
    chunk = max(1, MAX_PAIR_CELLS // len(sinks))
    if len(sources) <= chunk:  # normal room sizes: one pass, no assembly
        return _nearest_within_chunk(sources, sinks, radius)
    found = np.zeros(len(sources), dtype=bool)
    nearest = np.zeros(len(sources), dtype=np.int64)
    for start in range(0, len(sources), chunk):
        part = sources[start : start + chunk]
        found[start : start + len(part)], nearest[start : start + len(part)] = (
            _nearest_within_chunk(part, sinks, radius)
        )
    return found, nearest


def _nearest_within_chunk(
    sources: np.ndarray, sinks: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    dist_sq = _pair_dist_sq(sources, sinks)
    within = dist_sq <= radius * radius
    return within.any(axis=1), np.where(within, dist_sq, np.inf).argmin(axis=1)


def _pair_dist_sq(sources: np.ndarray, sinks: np.ndarray) -> np.ndarray:
    """Squared distance of every (source, sink) pair, (a, b). The same x*x + y*y as _sum_sq of
    the (a, b, 2) differences without building and striding through that array; either
    order of the arguments gives the same numbers (a - b is exactly -(b - a))."""
    dx = sources[:, 0, None] - sinks[None, :, 0]
    dy = sources[:, 1, None] - sinks[None, :, 1]
    return dx * dx + dy * dy


def resolve_hits(
    projectile_pos: np.ndarray, drone_pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Projectiles against drones: returns (spent (P,) bool, hits per drone (D,) int).

    A projectile hits at most one drone (the nearest within HIT_RADIUS) and is spent; a drone
    may take several hits in one tick.
    """
    shots = np.asarray(projectile_pos, dtype=np.float64).reshape(-1, 2)
    drones = np.asarray(drone_pos, dtype=np.float64).reshape(-1, 2)
    spent, target = _nearest_within(shots, drones, HIT_RADIUS)
    hits = np.bincount(target[spent], minlength=len(drones))
    return spent, hits


def resolve_combat(
    projectile_pos: np.ndarray, drone_pos: np.ndarray, player_pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`resolve_hits` and :func:`resolve_contacts` of every drone, from one matrix.

    Returns ``(spent (S,), hits per drone (D,), touching (D,), victim (D,))``: the first two
    as :func:`resolve_hits` gives them; ``touching`` says a (living) player lies within
    CONTACT_RADIUS of the drone, ``victim`` is the nearest such player's index (meaningful
    where touching). The caller decides which drones survive the hits to explode; the
    distances of each pair are the same float64 operations as the two functions'.
    """
    # float64 drones; shots and players become float64 in the concatenation (or, past the
    # cell limit, meet float64 drones in each subtraction): the same numbers either way.
    drones = np.asarray(drone_pos, dtype=np.float64).reshape(-1, 2)
    shots = np.asarray(projectile_pos).reshape(-1, 2)
    players = np.asarray(player_pos).reshape(-1, 2)
    n_shots, n_drones = len(shots), len(drones)
    if n_drones == 0 or n_drones * (n_shots + len(players)) > MAX_PAIR_CELLS:
        spent, hits = resolve_hits(shots, drones)  # (chunked, should a room ever get there)
        touching, victim = _nearest_within(drones, players, CONTACT_RADIUS)
        return spent, hits, touching, victim
    # Drones down the rows, shots then players across: (D, S + P).
    dist_sq = _pair_dist_sq(drones, np.concatenate([shots, players], dtype=np.float64))
    if not np.count_nonzero(dist_sq <= _REACH_SQ):
        # Most ticks nothing is within reach of anything: one count says so, and the answer
        # is what the passes below give then (all misses, index 0), without their calls.
        misses = np.zeros(n_drones, dtype=bool)
        return (
            np.zeros(n_shots, dtype=bool),
            np.zeros(n_drones, dtype=np.intp),
            misses,
            (np.zeros(n_drones, dtype=np.int64)),
        )
    if n_shots:
        near_shot = dist_sq[:, :n_shots] <= HIT_RADIUS * HIT_RADIUS
        spent = near_shot.any(axis=0)
        target = np.where(near_shot, dist_sq[:, :n_shots], np.inf).argmin(axis=0)
        hits = np.bincount(target[spent], minlength=n_drones)
    else:
        spent, hits = np.zeros(0, dtype=bool), np.zeros(n_drones, dtype=np.intp)
    if len(players) == 0:
        return spent, hits, np.zeros(n_drones, dtype=bool), np.zeros(n_drones, dtype=np.int64)
    player_sq = dist_sq[:, n_shots:]
    near_player = player_sq <= CONTACT_RADIUS * CONTACT_RADIUS
    touching = near_player.any(axis=1)
    victim = np.where(near_player, player_sq, np.inf).argmin(axis=1)
    return spent, hits, touching, victim


def hitscan(origin: np.ndarray, aim_radians: float, targets: np.ndarray, radius: float) -> int:
    """Index of the first target a ray from ``origin`` along ``aim_radians`` passes within
    ``radius`` of (nearest along the ray, in front of the shooter), or -1 when none is."""
    centres = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
    if len(centres) == 0:
        return -1
    direction = np.array([np.cos(aim_radians), np.sin(aim_radians)])
    offsets = centres - np.asarray(origin, dtype=np.float64).reshape(2)
    along = offsets @ direction  # distance along the ray to the closest approach
    across_sq = _sum_sq(offsets) - along * along
    hit = (along >= 0.0) & (across_sq <= radius * radius)
    if not hit.any():
        return -1
    return int(np.flatnonzero(hit)[np.argmin(along[hit])])


def resolve_contacts(
    drone_pos: np.ndarray, player_pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Drones against (living) players: returns (exploded (D,) bool, damage per player (P,)).

    A drone touching a player explodes on the nearest one, dealing CONTACT_DAMAGE.
    """
    drones = np.asarray(drone_pos, dtype=np.float64).reshape(-1, 2)
    players = np.asarray(player_pos, dtype=np.float64).reshape(-1, 2)
    exploded, victim = _nearest_within(drones, players, CONTACT_RADIUS)
    damage = np.bincount(victim[exploded], minlength=len(players)) * CONTACT_DAMAGE
    return exploded, damage
