"""orbs with its state in replicated numpy columns. Run: python orbs_columns.py"""

import esper
import numpy as np
from orbs_single import ARENA, ORB_RADIUS, ORBS, SPEED

from astranet.ecs import ColumnStore, Quantized, Schema, replicated
from astranet.game import SimContext
from astranet.systems import Stage, add_system

GRID = 256  # positions are multiples of 1/256: exactly what a snapshot can carry
PLAYER, ORB = 0, 1


@replicated
class Body:
    pos = Quantized(-64.0, 64.0, 1 / GRID, size=2)  # 16 bits per axis on the wire
    kind = Quantized(0.0, 1.0, 1.0)  # PLAYER or ORB: 1 bit


@replicated
class Score:
    points = Quantized(0.0, 65535.0, 1.0)  # an integer, 16 bits


SCHEMA = Schema(Body, Score)  # field order is part of the wire format


def snap(values: np.ndarray) -> np.ndarray:
    """Round to the grid, so the server holds exactly the values clients will decode."""
    return np.round(values * GRID) / GRID


def move_player(store: ColumnStore, net_id: int, direction: np.ndarray, dt_s: float) -> None:
    """One step of one player's movement (becomes the game's apply_input in step 2)."""
    rows = store.rows([net_id])
    pos = store["Body.pos"]
    pos[rows] = snap(np.clip(pos[rows] + direction * SPEED * dt_s, -ARENA, ARENA))


class CollectSystem(esper.Processor):
    """Every player against every orb in one array operation; collected orbs move away."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def process(self, sim: SimContext) -> None:
        store = sim.store
        kind, pos = store["Body.kind"], store["Body.pos"]
        players, orbs = np.flatnonzero(kind == PLAYER), np.flatnonzero(kind == ORB)
        if len(players) == 0 or len(orbs) == 0:
            return
        offsets = pos[orbs][None, :, :] - pos[players][:, None, :]  # (players, orbs, 2)
        touching = np.einsum("poc,poc->po", offsets, offsets) <= ORB_RADIUS**2
        taken = touching.any(axis=0)  # which orbs were collected this tick
        # An orb two players touch at once goes to the first (lowest net id): a fixed rule,
        # so every run of the same inputs gives the same scores.
        winners = touching.argmax(axis=0)[taken]
        store["Score.points"][players] += np.bincount(winners, minlength=len(players))
        pos[orbs[taken]] = snap(self.rng.uniform(-ARENA, ARENA, (int(taken.sum()), 2)))


def steer(me: np.ndarray, orbs: np.ndarray) -> np.ndarray:
    """The "keyboard": a unit vector from ``me`` towards the nearest of ``orbs`` (n, 2)."""
    if len(orbs) == 0:
        return np.zeros(2)
    offsets = orbs - me
    nearest = offsets[np.einsum("oc,oc->o", offsets, offsets).argmin()]
    return nearest / max(float(np.hypot(*nearest)), 1e-9)


def play(frames: int, report_every: int = 60) -> ColumnStore:
    rng = np.random.default_rng(1)
    sim = SimContext(ColumnStore(SCHEMA), dt_s=1 / 30)
    sim.store.spawn(ORBS, Body__pos=snap(rng.uniform(-ARENA, ARENA, (ORBS, 2))), Body__kind=ORB)
    player = int(sim.store.spawn(1, Body__kind=PLAYER)[0])  # a net id, not a row
    add_system(CollectSystem(rng), Stage.SIMULATE)
    for frame in range(1, frames + 1):
        pos, kind = sim.store["Body.pos"], sim.store["Body.kind"]
        me = pos[sim.store.rows([player])[0]]
        move_player(sim.store, player, steer(me, pos[kind == ORB]), sim.dt_s)
        sim.tick += 1
        esper.process(sim)
        if frame % report_every == 0:
            row = sim.store.rows([player])[0]
            x, y = sim.store["Body.pos"][row]
            points = int(sim.store["Score.points"][row])
            print(f"frame {frame}: player at ({x:.1f}, {y:.1f}), score {points}")
    return sim.store


def main() -> None:
    play(frames=300)


if __name__ == "__main__":
    main()
