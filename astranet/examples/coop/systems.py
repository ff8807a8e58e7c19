"""coop esper processors: thin wrappers that select rows by ``Body.kind`` and call coop.sim.

Order inside ``Stage.SIMULATE`` (after the server applied this tick's inputs, before the
snapshot is captured): ProjectileSystem -> DroneSystem -> CombatSystem -> WaveSystem. So a shot
fired by this tick's input already flies this tick, combat sees this tick's positions, and the
snapshot shows the wave that replaced a cleared one.

All of them are server-authoritative: with ``sim.authoritative`` False (the client's copy of
the world) they do nothing, because the client predicts only its own avatar and takes drones,
projectiles, hp, score and waves from snapshots.

Goals: per-tick work is a few dozen numpy calls on whole selections (at room sizes each call's
overhead is the cost, so the systems share one :class:`KindRows` per room: the rows of each
kind, recomputed only when the kinds change); structure changes are batched (one ``despawn``
and at most one ``spawn`` per system per tick).
Limits: see astranet.examples.coop.sim (MAX_DRONES, MAX_PROJECTILES, MAX_PAIR_CELLS).
Benchmark: benchmarks/coop_tick.py (one full tick, per-system split).
"""

from __future__ import annotations

import struct

import esper
import numpy as np

from astranet.ecs import ColumnStore
from astranet.errors import InvalidState
from astranet.examples.coop.components import DRONE, MAX_SCORE, MAX_WAVE, PLAYER, PROJECTILE, TEAM
from astranet.examples.coop.sim import (
    CONTACT_DAMAGE,
    PLAYER_HP,
    SCORE_PER_KILL,
    advance_projectiles,
    chase,
    drone_hp_for_wave,
    drone_speeds,
    resolve_combat,
    room_seed,
    wave_size,
    wave_spawn_positions,
)
from astranet.game import SimContext
from astranet.systems import Stage, add_system

__all__ = [
    "WAVE_EVENT",
    "WIPED_EVENT",
    "CombatSystem",
    "DroneSystem",
    "KindRows",
    "ProjectileSystem",
    "WaveSystem",
    "add_coop_systems",
    "team_row",
]


#: Game events (sim.events): a new wave started (data: the wave number, u16 LE) / the team
#: was wiped (no data). Clients surface them in ``ClientWorld.events``.
WAVE_EVENT = "coop.wave"
WIPED_EVENT = "coop.wiped"


def team_row(store: ColumnStore) -> int:
    """Row of the single TEAM entity (spawned by ``Coop.setup``)."""
    return _single_team_row(_rows_of(store["Body.kind"] == TEAM))


def _single_team_row(rows: np.ndarray) -> int:
    if len(rows) != 1:  # only a store that never went through Coop.setup lacks it
        raise InvalidState(f"coop room must hold exactly one team entity, found {len(rows)}")
    return int(rows[0])


def _rows_of(mask: np.ndarray) -> np.ndarray:
    # np.flatnonzero's result at half its call overhead (the masks here are 1-D).
    return mask.nonzero()[0]


#: Where a selection's rows are in a column: a slice when they are one contiguous run (the
#: usual case: a wave spawns its drones together and despawns keep the order), else the rows.
RowsAt = slice | np.ndarray


def _at(rows: np.ndarray) -> RowsAt:
    if len(rows) and int(rows[-1]) - int(rows[0]) + 1 == len(rows):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def _gather(column: np.ndarray, at: RowsAt) -> np.ndarray:
    """``column``'s values at ``at``: a view for a slice (a quarter of take()'s cost), else a
    take() (the gather of fancy indexing at a fraction of its call overhead). Read-only use:
    a view changes with the column. Writes go through ``column[at] = ...``, for which a slice
    costs a third of fancy indexing."""
    return column[at] if at.__class__ is slice else column.take(at, axis=0)


class KindRows:
    """The rows of each entity kind, shared by one room's coop systems.

    Every system starts by selecting rows by ``Body.kind``. At room sizes a mask and its
    nonzero cost a microsecond or two of numpy call overhead, and the four systems ask about
    ten times a tick, while the kinds change only with spawns and despawns (a few times a
    tick at most). So the selections are kept until the kind column's bytes change: comparing
    them is ~0.1 us, and also catches a game that rewrites a kind in place. The living
    players are kept the same way, until the hp column changes too.
    """

    __slots__ = ("_at", "_hp", "_kinds", "_living", "_living_at", "_rows")

    def __init__(self) -> None:
        self._kinds = b""  # the Body.kind column (as bytes) the cached rows were taken from
        self._rows: dict[int, np.ndarray] = {}
        self._at: dict[int, RowsAt] = {}  # _at() of each kind's rows, as asked for
        # The Health.hp column (as bytes) the living players were taken from, with these kinds.
        self._hp: bytes | None = None
        self._living = np.zeros(0, dtype=np.intp)
        self._living_at: RowsAt = self._living

    def __call__(self, store: ColumnStore, kind: int) -> np.ndarray:
        """Rows of the entities of ``kind``, ascending (read-only: the systems share them)."""
        column = store["Body.kind"]
        kinds = column.tobytes()
        if kinds != self._kinds:
            self._kinds = kinds
            self._rows = {}
            self._at = {}
            self._hp = None
        rows = self._rows.get(kind)
        if rows is None:
            rows = self._rows[kind] = _rows_of(column == kind)
            rows.flags.writeable = False
        return rows

    def living_players(self, store: ColumnStore) -> np.ndarray:
        """Rows of the players with hp left (kept while the kinds and the hp column stay)."""
        players = self(store, PLAYER)  # (forgets the living when the kinds changed)
        hp = store["Health.hp"]
        hp_bytes = hp.tobytes()
        if hp_bytes != self._hp:
            self._hp = hp_bytes
            self._living = players.compress(hp.take(players) > 0)
            self._living.flags.writeable = False
            self._living_at = _at(self._living)
        return self._living

    def at(self, store: ColumnStore, kind: int) -> RowsAt:
        """Where the rows of ``kind`` are (:data:`RowsAt`), for :func:`_gather` and writes."""
        rows = self(store, kind)  # (forgets the slices when the kinds changed)
        at = self._at.get(kind)
        if at is None:
            at = self._at[kind] = _at(rows)
        return at

    def living_players_at(self, store: ColumnStore) -> RowsAt:
        """Where :meth:`living_players` are (:data:`RowsAt`)."""
        self.living_players(store)
        return self._living_at

    def team(self, store: ColumnStore) -> int:
        """:func:`team_row`, from the cached selection."""
        return _single_team_row(self(store, TEAM))


class ProjectileSystem(esper.Processor):
    """Moves every projectile one tick; the arena wall removes it."""

    def __init__(self, rows: KindRows | None = None) -> None:
        self.rows = KindRows() if rows is None else rows

    def process(self, sim: SimContext) -> None:
        if not sim.authoritative:
            return
        store = sim.store
        shots = self.rows(store, PROJECTILE)
        if len(shots) == 0:
            return
        pos, at = store["Body.pos"], self.rows.at(store, PROJECTILE)
        moved, inside = advance_projectiles(
            _gather(pos, at), _gather(store["Body.heading"], at), sim.dt_s
        )
        # Shots that left the arena are written too, then despawned: same state, fewer calls.
        pos[at] = moved
        if np.count_nonzero(inside) < len(shots):
            store.despawn(store.net_ids.take(shots[~inside]))


class DroneSystem(esper.Processor):
    """Every drone moves toward its nearest living player (faces it, too)."""

    def __init__(self, rows: KindRows | None = None) -> None:
        self.rows = KindRows() if rows is None else rows
        # The last tick's drone ids and their per-tick steps: ids change only when drones
        # die or spawn, so most ticks reuse the hash (drone_speeds) instead of recomputing it.
        self._ids = b""
        self._dt_s = 0.0
        self._steps = np.zeros(0)

    def process(self, sim: SimContext) -> None:
        if not sim.authoritative:
            return
        store = sim.store
        drones = self.rows(store, DRONE)
        if len(drones) == 0:
            return
        targets = self.rows.living_players(store)
        if len(targets) == 0:
            return  # nobody to chase: the swarm waits where it is
        pos, at = store["Body.pos"], self.rows.at(store, DRONE)
        # (chase returns new arrays: the views it reads are not written while it runs.)
        moved, heading = chase(
            _gather(pos, at),
            self._speeds(store, at, sim.dt_s),
            _gather(pos, self.rows.living_players_at(store)),
        )
        pos[at] = moved
        store["Body.heading"][at] = heading

    def _speeds(self, store: ColumnStore, drones: RowsAt, dt_s: float) -> np.ndarray:
        ids = _gather(store.net_ids, drones)
        key = ids.tobytes()
        if key != self._ids or dt_s != self._dt_s:
            self._ids, self._dt_s = key, dt_s
            self._steps = drone_speeds(ids) * dt_s
        return self._steps


class CombatSystem(esper.Processor):
    """Projectile hits damage drones (kills score); drones touching players explode on them."""

    def __init__(self, rows: KindRows | None = None) -> None:
        self.rows = KindRows() if rows is None else rows

    def process(self, sim: SimContext) -> None:
        if not sim.authoritative:
            return
        store, rows = sim.store, self.rows
        drones = rows(store, DRONE)
        if len(drones) == 0:
            return
        pos, hp = store["Body.pos"], store["Health.hp"]
        shots = rows(store, PROJECTILE)
        players = rows.living_players(store)
        drones_at, players_at = rows.at(store, DRONE), rows.living_players_at(store)
        # One distance matrix for both questions: drones against shots, and against players.
        spent, hits, touching, victim = resolve_combat(
            _gather(pos, rows.at(store, PROJECTILE)),
            _gather(pos, drones_at),
            _gather(pos, players_at),
        )
        n_spent = np.count_nonzero(spent)
        # A copy: drone_hp is read after the players' hp is written (other rows, but still).
        drone_hp = hp.take(drones)
        if n_spent:  # (hp never goes below 0, so with no hit nothing changes here)
            drone_hp = np.maximum(drone_hp - hits, 0)
            hp[drones_at] = drone_hp
        # Drones at 0 hp die: shot now, or hit by a lag-compensated hitscan this tick.
        killed = drone_hp <= 0
        n_killed = np.count_nonzero(killed)
        # Drones that survived the shots and touch a player explode on the nearest one.
        exploded = touching & ~killed if n_killed else touching
        n_exploded = np.count_nonzero(exploded)
        if n_exploded:
            damage = np.bincount(victim[exploded], minlength=len(players)) * CONTACT_DAMAGE
            hp[players_at] = np.maximum(_gather(hp, players_at) - damage, 0)
        if n_killed:
            team = rows.team(store)
            store["Team.score"][team] = min(
                float(store["Team.score"][team]) + SCORE_PER_KILL * n_killed, MAX_SCORE
            )
        if n_spent or n_killed or n_exploded:
            gone = np.concatenate([shots[spent], drones[killed | exploded]])
            store.despawn(store.net_ids.take(gone))


class WaveSystem(esper.Processor):
    """Starts the next wave when the last drone is gone; restarts at wave 1 after a wipe.

    A new wave restores every player to full hp (reviving the downed). If every player is
    down, the team is wiped: drones and projectiles vanish, score and wave go back to 0,
    everyone is revived, and wave 1 starts in the same tick. An empty room starts no waves.
    """

    def __init__(self, rows: KindRows | None = None) -> None:
        self.rows = KindRows() if rows is None else rows

    def process(self, sim: SimContext) -> None:
        if not sim.authoritative:
            return
        store, rows = sim.store, self.rows
        if len(rows(store, PLAYER)) == 0:
            return
        if len(rows.living_players(store)) == 0:
            self._wipe(store)
            if sim.events is not None:
                sim.events.emit(WIPED_EVENT)
        if len(rows(store, DRONE)):
            return
        team = rows.team(store)
        wave = min(int(store["Team.wave"][team]) + 1, MAX_WAVE)
        store["Team.wave"][team] = wave
        if sim.events is not None:  # a reliable event beside the state (docs/replication.md)
            sim.events.emit(WAVE_EVENT, struct.pack("<H", wave))
        players = rows(store, PLAYER)
        store["Health.hp"][players] = np.maximum(store["Health.hp"][players], PLAYER_HP)
        n = wave_size(wave)
        store.spawn(
            n,
            Body__pos=wave_spawn_positions(room_seed(sim.room_id), wave, n),
            Body__kind=DRONE,
            Health__hp=drone_hp_for_wave(wave),
        )

    def _wipe(self, store: ColumnStore) -> None:
        kind = store["Body.kind"]
        doomed = _rows_of((kind == DRONE) | (kind == PROJECTILE))
        if len(doomed):
            store.despawn(store.net_ids[doomed])
        team = self.rows.team(store)
        store["Team.score"][team] = 0
        store["Team.wave"][team] = 0
        players = store["Body.kind"] == PLAYER
        store["Health.hp"][players] = PLAYER_HP
        store["Weapon.cooldown"][players] = 0


def add_coop_systems() -> None:
    """Add the four systems to esper's current world, in their documented order."""
    rows = KindRows()  # one per room: the systems share its selections within a tick
    add_system(ProjectileSystem(rows), Stage.SIMULATE, 0)
    add_system(DroneSystem(rows), Stage.SIMULATE, 1)
    add_system(CombatSystem(rows), Stage.SIMULATE, 2)
    add_system(WaveSystem(rows), Stage.SIMULATE, 3)
