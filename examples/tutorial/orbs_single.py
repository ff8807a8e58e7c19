"""orbs, single player: plain esper, before any networking. Run: python orbs_single.py"""

import math
import random
from dataclasses import dataclass as component  # a component is a plain dataclass

import esper

ARENA = 20.0  # the arena is [-ARENA, ARENA] on both axes
SPEED = 8.0  # units per second at full stick
ORB_RADIUS = 1.0  # touch an orb within this distance to collect it
ORBS = 5
DT_S = 1 / 30  # one fixed simulation step


@component
class Position:
    x: float
    y: float


@component
class Velocity:  # the stick direction, each component in [-1, 1]
    dx: float = 0.0
    dy: float = 0.0


@component
class Orb:
    pass


@component
class Score:
    points: int = 0


def clamp(value: float) -> float:
    return max(-ARENA, min(ARENA, value))


class MovementProcessor(esper.Processor):
    def process(self, dt_s: float) -> None:
        for _, (pos, vel) in esper.get_components(Position, Velocity):
            pos.x = clamp(pos.x + vel.dx * SPEED * dt_s)
            pos.y = clamp(pos.y + vel.dy * SPEED * dt_s)


class CollectProcessor(esper.Processor):
    """A player touching an orb scores; the orb reappears at a random spot."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def process(self, dt_s: float) -> None:
        for _, (pos, score) in esper.get_components(Position, Score):
            for _, (orb_pos, _) in esper.get_components(Position, Orb):
                if math.hypot(orb_pos.x - pos.x, orb_pos.y - pos.y) <= ORB_RADIUS:
                    score.points += 1
                    orb_pos.x = self.rng.uniform(-ARENA, ARENA)
                    orb_pos.y = self.rng.uniform(-ARENA, ARENA)


def steer(player: int) -> None:
    """The "keyboard": point the stick at the nearest orb."""
    me = esper.component_for_entity(player, Position)
    orbs = [pos for _, (pos, _) in esper.get_components(Position, Orb)]
    target = min(orbs, key=lambda o: math.hypot(o.x - me.x, o.y - me.y))
    distance = math.hypot(target.x - me.x, target.y - me.y) or 1.0
    vel = esper.component_for_entity(player, Velocity)
    vel.dx, vel.dy = (target.x - me.x) / distance, (target.y - me.y) / distance


def play(frames: int, report_every: int = 60) -> tuple[Position, Score]:
    rng = random.Random(1)
    player = esper.create_entity(Position(0.0, 0.0), Velocity(), Score())
    for _ in range(ORBS):
        esper.create_entity(Position(rng.uniform(-ARENA, ARENA), rng.uniform(-ARENA, ARENA)), Orb())
    esper.add_processor(MovementProcessor(), priority=2)  # higher priority runs first
    esper.add_processor(CollectProcessor(rng), priority=1)
    for frame in range(1, frames + 1):
        steer(player)
        esper.process(DT_S)
        if frame % report_every == 0:
            pos = esper.component_for_entity(player, Position)
            points = esper.component_for_entity(player, Score).points
            print(f"frame {frame}: player at ({pos.x:.1f}, {pos.y:.1f}), score {points}")
    return esper.component_for_entity(player, Position), esper.component_for_entity(player, Score)


def main() -> None:
    play(frames=300)


if __name__ == "__main__":
    main()
