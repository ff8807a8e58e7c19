"""coop esper processors: thin wrappers that select rows by ``Body.kind`` and call coop.sim.

Order inside ``Stage.SIMULATE`` (after the server applied this tick's inputs, before the
snapshot is captured): ProjectileSystem -> DroneSystem -> CombatSystem -> WaveSystem. So a shot
fired by this tick's input already flies this tick, combat sees this tick's positions, and the
snapshot shows the wave that replaced a cleared one.

All of them are server-authoritative: with ``sim.authoritative`` False (the client's copy of
the world) they do nothing, because the client predicts only its own avatar and takes drones,
projectiles, hp, score and waves from snapshots.

Goals: per-tick work is a handful of masks and numpy calls; structure changes are batched (one
``despawn`` and at most one ``spawn`` per system per tick).
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
    PLAYER_HP,
    SCORE_PER_KILL,
    advance_projectiles,
    chase,
    drone_hp_for_wave,
    drone_speeds,
    resolve_contacts,
    resolve_hits,
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
    rows = _rows_of(store["Body.kind"] == TEAM)
    if len(rows) != 1:  # only a store that never went through Coop.setup lacks it
        raise InvalidState(f"coop room must hold exactly one team entity, found {len(rows)}")
    return int(rows[0])


def _rows_of(mask: np.ndarray) -> np.ndarray:
    # np.flatnonzero's result at half its call overhead (the masks here are 1-D).
    return mask.nonzero()[0]


def _living_players(store: ColumnStore) -> np.ndarray:
    return _rows_of((store["Body.kind"] == PLAYER) & (store["Health.hp"] > 0))


class ProjectileSystem(esper.Processor):
    """Moves every projectile one tick; the arena wall removes it."""

    def process(self, sim: SimContext) -> None:
        if not sim.authoritative:
            return
        store = sim.store
        shots = _rows_of(store["Body.kind"] == PROJECTILE)
        if len(shots) == 0:
            return
        moved, inside = advance_projectiles(
            store["Body.pos"][shots], store["Body.heading"][shots], sim.dt_s
        )
        # Shots that left the arena are written too, then despawned: same state, fewer calls.
        store["Body.pos"][shots] = moved
        if np.count_nonzero(inside) < len(shots):
            store.despawn(store.net_ids[shots[~inside]])


class DroneSystem(esper.Processor):
    """Every drone moves toward its nearest living player (faces it, too)."""

    def __init__(self) -> None:
        # The last tick's drone ids and their per-tick steps: ids change only when drones
        # die or spawn, so most ticks reuse the hash (drone_speeds) instead of recomputing it.
        self._ids = b""
        self._dt_s = 0.0
        self._steps = np.zeros(0)

    def process(self, sim: SimContext) -> None:
        if not sim.authoritative:
            return
        store = sim.store
        drones = _rows_of(store["Body.kind"] == DRONE)
        targets = _living_players(store)
        if len(drones) == 0 or len(targets) == 0:
            return  # nobody to chase: the swarm waits where it is
        pos = store["Body.pos"]
        moved, heading = chase(pos[drones], self._speeds(store, drones, sim.dt_s), pos[targets])
        pos[drones] = moved
        store["Body.heading"][drones] = heading

    def _speeds(self, store: ColumnStore, drones: np.ndarray, dt_s: float) -> np.ndarray:
        ids = store.net_ids[drones]
        key = ids.tobytes()
        if key != self._ids or dt_s != self._dt_s:
            self._ids, self._dt_s = key, dt_s
            self._steps = drone_speeds(ids) * dt_s
        return self._steps


class CombatSystem(esper.Processor):
    """Projectile hits damage drones (kills score); drones touching players explode on them."""

    def process(self, sim: SimContext) -> None:
        if not sim.authoritative:
            return
        store = sim.store
        kind, pos, hp = store["Body.kind"], store["Body.pos"], store["Health.hp"]
        drones = _rows_of(kind == DRONE)
        if len(drones) == 0:
            return
        shots = _rows_of(kind == PROJECTILE)
        drone_hp = hp[drones]
        spent = None
        if len(shots):  # (hp never goes below 0, so with no shot nothing changes here)
            spent, hits = resolve_hits(pos[shots], pos[drones])
            drone_hp = np.maximum(drone_hp - hits, 0)
            hp[drones] = drone_hp
        # Drones at 0 hp die: shot now, or hit by a lag-compensated hitscan this tick.
        killed = drone_hp <= 0
        n_killed = np.count_nonzero(killed)
        # Drones that survived the shots may reach a player this tick.
        players = _living_players(store)
        survivors = drones[~killed] if n_killed else drones
        exploded, damage = resolve_contacts(pos[survivors], pos[players])
        n_exploded = np.count_nonzero(exploded)
        if n_exploded:
            hp[players] = np.maximum(hp[players] - damage, 0)
        if n_killed:
            team = team_row(store)
            store["Team.score"][team] = min(
                float(store["Team.score"][team]) + SCORE_PER_KILL * n_killed, MAX_SCORE
            )
        n_spent = 0 if spent is None else np.count_nonzero(spent)
        if n_spent or n_killed or n_exploded:
            gone = np.concatenate(
                [shots[spent] if n_spent else shots[:0], drones[killed], survivors[exploded]]
            )
            store.despawn(store.net_ids[gone])


class WaveSystem(esper.Processor):
    """Starts the next wave when the last drone is gone; restarts at wave 1 after a wipe.

    A new wave restores every player to full hp (reviving the downed). If every player is
    down, the team is wiped: drones and projectiles vanish, score and wave go back to 0,
    everyone is revived, and wave 1 starts in the same tick. An empty room starts no waves.
    """

    def process(self, sim: SimContext) -> None:
        if not sim.authoritative:
            return
        store = sim.store
        kind = store["Body.kind"]
        players = _rows_of(kind == PLAYER)
        if len(players) == 0:
            return
        if not np.count_nonzero(store["Health.hp"][players] > 0):
            self._wipe(store)
            if sim.events is not None:
                sim.events.emit(WIPED_EVENT)
            kind = store["Body.kind"]
        if np.count_nonzero(kind == DRONE):
            return
        team = team_row(store)
        wave = min(int(store["Team.wave"][team]) + 1, MAX_WAVE)
        store["Team.wave"][team] = wave
        if sim.events is not None:  # a reliable event beside the state (docs/replication.md)
            sim.events.emit(WAVE_EVENT, struct.pack("<H", wave))
        players = _rows_of(kind == PLAYER)
        store["Health.hp"][players] = np.maximum(store["Health.hp"][players], PLAYER_HP)
        n = wave_size(wave)
        store.spawn(
            n,
            Body__pos=wave_spawn_positions(room_seed(sim.room_id), wave, n),
            Body__kind=DRONE,
            Health__hp=drone_hp_for_wave(wave),
        )

    @staticmethod
    def _wipe(store: ColumnStore) -> None:
        kind = store["Body.kind"]
        doomed = _rows_of((kind == DRONE) | (kind == PROJECTILE))
        if len(doomed):
            store.despawn(store.net_ids[doomed])
        team = team_row(store)
        store["Team.score"][team] = 0
        store["Team.wave"][team] = 0
        players = store["Body.kind"] == PLAYER
        store["Health.hp"][players] = PLAYER_HP
        store["Weapon.cooldown"][players] = 0


def add_coop_systems() -> None:
    """Add the four systems to esper's current world, in their documented order."""
    add_system(ProjectileSystem(), Stage.SIMULATE, 0)
    add_system(DroneSystem(), Stage.SIMULATE, 1)
    add_system(CombatSystem(), Stage.SIMULATE, 2)
    add_system(WaveSystem(), Stage.SIMULATE, 3)
