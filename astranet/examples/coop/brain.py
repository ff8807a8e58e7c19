"""Bot brains for the co-op game: seeded personalities that move and shoot like people.

A :class:`BotBrain` is the ``input_source`` of a :class:`~astranet.client.ClientWorld`: the
prediction system calls it once per server tick and sends the 4-byte coop blob it returns. It
reads the client's *predicted* store (``world.local.sim.store``: the avatar as predicted, every
other row as of the newest snapshot), so it decides from exactly what a player would see.

Why it does not look like a metronome: every bot draws a :class:`Personality` from its seed —
a movement :class:`Style` (wander between waypoints, chase the nearest drone to a preferred
range, kite away from it), a reaction delay (it re-targets and re-plans only every few ticks,
like a human's 150-400 ms), an aim error and a limited aim turn rate (the crosshair slews, it
does not snap), a trigger discipline (fires only when the aim is within some angle of the
target) and a cruising speed. FIRE is set only when ``astranet.examples.coop.fire_ready`` says the
weapon
is ready in the predicted store (the server refuses anything else as "fire rate" and kicks
repeat offenders).

Goals: a decision is O(drones) numpy (nearest drone over the drone rows, no per-entity Python
loop) plus a few scalar operations; deterministic for a seed and a sequence of stores.
:class:`BlindPilot` steers a bot that decodes nothing (``astranet-loadtest --lite``), and
``bot_kit`` hands both to the game-agnostic tools (``astranet.tools.bot`` finds it next to the
game the tools were given with ``--game``).

Limits: knows only the coop schema; one avatar per brain. Benchmark: the bots' CPU per client
is measured by ``astranet-loadtest`` (docs/benchmarks.md, "Load test (co-op bots)").
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass

import numpy as np

from astranet.ecs import ColumnStore
from astranet.examples.coop.components import ARENA, DRONE
from astranet.examples.coop.game import fire_ready
from astranet.examples.coop.input import encode_input
from astranet.examples.coop.sim import FIRE_INTERVAL_INPUTS, PLAYER_SPEED, nearest

__all__ = [
    "SAFE_FIRE_GAP",
    "SHOT_RANGE",
    "WANDER_RADIUS",
    "BlindPilot",
    "BotBrain",
    "CoopBotKit",
    "Personality",
    "Style",
    "bot_kit",
]

# Waypoints stay this far inside the arena: humans do not hug the wall where drones spawn.
WANDER_RADIUS = ARENA * 0.5
# A shot flies 30 units/s until it leaves the arena; beyond this the target has moved away.
SHOT_RANGE = 45.0
_TAU = 2.0 * math.pi


class Style(enum.Enum):
    WANDER = "wander"  # walk between random waypoints, shoot what comes close
    CHASE = "chase"  # close in on the nearest drone, circle it at the preferred range
    KITE = "kite"  # keep the nearest drone at the preferred range, backing off


@dataclass(frozen=True, slots=True)
class Personality:
    """How one bot plays; draw one per bot with :meth:`draw`."""

    style: Style
    reaction_ticks: int  # ticks between re-plans (30 Hz: 5..12 = 170..400 ms)
    aim_error_rad: float  # standard deviation of the aim's offset from the target
    aim_turn_rad: float  # largest aim change per tick (the crosshair slews)
    trigger_rad: float  # fire only when the aim is this close to the target's bearing
    preferred_range: float  # chase/kite distance to the target
    speed: float  # fraction of full speed when moving (encode_input clamps to 1)
    strafe_sign: int  # +1 circles counter-clockwise around a target, -1 clockwise

    @classmethod
    def draw(cls, rng: random.Random) -> Personality:
        return cls(
            style=rng.choice(list(Style)),
            reaction_ticks=rng.randint(5, 12),
            aim_error_rad=rng.uniform(0.02, 0.15),
            aim_turn_rad=rng.uniform(0.15, 0.45),
            trigger_rad=rng.uniform(0.08, 0.3),
            preferred_range=rng.uniform(10.0, 22.0),
            speed=rng.uniform(0.6, 0.98),
            strafe_sign=rng.choice((-1, 1)),
        )


def _wrap(angle: float) -> float:
    """``angle`` folded into (-pi, pi]."""
    return (angle + math.pi) % _TAU - math.pi


class BotBrain:
    """A callable input source: ``brain()`` -> the next coop input blob (see module doc)."""

    def __init__(
        self,
        personality: Personality,
        seed: int,
        store: ColumnStore | None = None,
        net_id: int | None = None,
    ) -> None:
        self.personality = personality
        self.rng = random.Random(seed)
        self.store = store  # the predicted store; bind() sets it once the world exists
        self.net_id = net_id
        self.aim = self.rng.uniform(-math.pi, math.pi)
        self.move = (0.0, 0.0)
        self.target: tuple[float, float] | None = None  # target's position at the last plan
        self.waypoint = self._new_waypoint()
        self.ticks = 0
        self.shots = 0
        self._aim_offset = 0.0

    def bind(self, store: ColumnStore, net_id: int | None) -> None:
        """Point the brain at the predicted store and the avatar (after a (re)join)."""
        self.store = store
        self.net_id = net_id

    def __call__(self) -> bytes:
        store, net_id = self.store, self.net_id
        if store is None or net_id is None or not bool(store.contains([net_id])[0]):
            return encode_input(0.0, 0.0, self.aim, False)
        me = store["Body.pos"][store.rows([net_id])[0]].astype(np.float64)
        if self.ticks % self.personality.reaction_ticks == 0:
            self._plan(store, me)
        self.ticks += 1
        fire = self._steer_aim(me) and fire_ready(store, net_id)
        self.shots += fire
        return encode_input(self.move[0], self.move[1], self.aim, fire)

    # -- planning (every reaction_ticks) ----------------------------------------------------

    def _plan(self, store: ColumnStore, me: np.ndarray) -> None:
        self.target = _nearest_drone(store, me)
        self._aim_offset = self.rng.gauss(0.0, self.personality.aim_error_rad)
        style = self.personality.style
        if self.target is None or style is Style.WANDER:
            self.move = self._toward_waypoint(me)
        else:
            self.move = self._around_target(me, np.asarray(self.target), style)

    def _new_waypoint(self) -> tuple[float, float]:
        return (
            self.rng.uniform(-WANDER_RADIUS, WANDER_RADIUS),
            self.rng.uniform(-WANDER_RADIUS, WANDER_RADIUS),
        )

    def _toward_waypoint(self, me: np.ndarray) -> tuple[float, float]:
        offset = np.asarray(self.waypoint) - me
        distance = float(np.hypot(*offset))
        if distance < 2.0:
            self.waypoint = self._new_waypoint()
            if self.rng.random() < 0.3:  # people stop for a moment now and then
                return (0.0, 0.0)
            offset = np.asarray(self.waypoint) - me
            distance = float(np.hypot(*offset))
        scale = self.personality.speed / max(distance, 1e-9)
        return (float(offset[0] * scale), float(offset[1] * scale))

    def _around_target(
        self, me: np.ndarray, target: np.ndarray, style: Style
    ) -> tuple[float, float]:
        p = self.personality
        offset = target - me
        distance = max(float(np.hypot(*offset)), 1e-9)
        radial = offset / distance  # unit vector toward the target
        tangent = np.array([-radial[1], radial[0]]) * p.strafe_sign
        # Positive pull closes in, negative backs off; near the preferred range, circle.
        pull = float(np.clip((distance - p.preferred_range) / 5.0, -1.0, 1.0))
        if style is Style.KITE:
            pull = min(pull, 0.0) if distance < p.preferred_range else pull * 0.5
        direction = radial * pull + tangent * (1.0 - abs(pull))
        # Drift back toward the middle when near the edge (drones come from there).
        direction -= 0.5 * me / ARENA * (np.abs(me) > WANDER_RADIUS)
        norm = max(float(np.hypot(*direction)), 1e-9)
        return (float(direction[0] / norm * p.speed), float(direction[1] / norm * p.speed))

    # -- aiming (every tick) ----------------------------------------------------------------

    def _steer_aim(self, me: np.ndarray) -> bool:
        """Slew the aim toward the target; True when it is on target and in range."""
        if self.target is None:
            return False
        dx, dy = self.target[0] - me[0], self.target[1] - me[1]
        bearing = math.atan2(dy, dx)
        wanted = bearing + self._aim_offset
        turn = _wrap(wanted - self.aim)
        limit = self.personality.aim_turn_rad
        self.aim = _wrap(self.aim + max(-limit, min(limit, turn)))
        on_target = abs(_wrap(bearing - self.aim)) <= self.personality.trigger_rad
        return on_target and math.hypot(dx, dy) <= SHOT_RANGE


def _nearest_drone(store: ColumnStore, me: np.ndarray) -> tuple[float, float] | None:
    """Position of the drone nearest to ``me`` (vectorised over the drone rows)."""
    position = nearest(store["Body.pos"][store["Body.kind"] == DRONE], me)
    if position is None:
        return None
    return (float(position[0]), float(position[1]))


# The weapon fires once every FIRE_INTERVAL_INPUTS applied inputs; 2 more of slack for a
# dropped input or two.
SAFE_FIRE_GAP = FIRE_INTERVAL_INPUTS + 2


class BlindPilot:
    """Steering for a bot that never decodes a snapshot (a LiteBot): a random walk around
    where dead reckoning says it is, an aim that sweeps, FIRE on a conservative schedule.

    FIRE without seeing the weapon: the server's cooldown counts *applied* inputs, so it fires
    only when the server has applied (``Snapshot.last_input_seq``) at least ``SAFE_FIRE_GAP``
    inputs past the previous shot; the gap has slack for an input dropped from a full queue.
    """

    def __init__(self, personality: Personality, seed: int) -> None:
        self.personality = personality
        self.rng = random.Random(seed ^ 0x5EED)
        self.position = (0.0, 0.0)  # dead reckoning: players spawn within 6 units of (0, 0)
        self.heading = self.rng.uniform(-math.pi, math.pi)
        self.aim = self.rng.uniform(-math.pi, math.pi)
        self.last_fire_seq: int | None = None
        self.ticks = 0

    def next_input(self, applied_seq: int) -> tuple[bytes, bool]:
        """The next blob, and whether it fires (``applied_seq``: the server's newest)."""
        p = self.personality
        if self.ticks % (p.reaction_ticks * 6) == 0:  # a new direction every 1-2.4 s
            self.heading = self.rng.uniform(-math.pi, math.pi)
        x, y = self.position
        if max(abs(x), abs(y)) > WANDER_RADIUS:  # turn back toward the middle
            self.heading = math.atan2(-y, -x)
        self.ticks += 1
        self.aim += p.aim_turn_rad * 0.2 * p.strafe_sign  # a slow sweep
        if self.last_fire_seq is None:
            fire = applied_seq > 0  # the first snapshot: the weapon starts cooled
        else:
            fire = applied_seq >= self.last_fire_seq + SAFE_FIRE_GAP
        blob = encode_input(
            p.speed * math.cos(self.heading), p.speed * math.sin(self.heading), self.aim, fire
        )
        return blob, fire

    def sent(self, seq: int, fire: bool, tick_s: float) -> None:
        """The blob went out as ``seq``: move the dead reckoning one tick, note the shot."""
        step = PLAYER_SPEED * tick_s * self.personality.speed
        x, y = self.position
        self.position = (x + step * math.cos(self.heading), y + step * math.sin(self.heading))
        if fire:
            self.last_fire_seq = seq


class CoopBotKit:
    """What the tools need to play coop: a brain (full bots) and a blind pilot (lite bots),
    both seeded; see ``astranet.tools.bot.BotKit``."""

    def brain(self, seed: int) -> BotBrain:
        return BotBrain(Personality.draw(random.Random(seed)), seed)

    def blind(self, seed: int) -> BlindPilot:
        return BlindPilot(Personality.draw(random.Random(seed)), seed)


bot_kit = CoopBotKit()
