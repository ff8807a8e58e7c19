"""coop: the Game object astranet's server loads (``astranet.examples.coop:game``).

Wires the pieces to the :class:`~astranet.game.Game` interface: the schema
(astranet.examples.coop.components), the input blob (astranet.examples.coop.input), the player
step shared with prediction and the vectorised systems (astranet.examples.coop.sim,
astranet.examples.coop.systems).

Movement sanity (``check_input``, the server's hook): a move vector longer than 127 is
``"impossible speed"``; FIRE while the living player's weapon is still cooling down is
``"fire rate"``. The server then applies :data:`~astranet.examples.coop.input.STAND_STILL`
instead and
kicks a player whose violations keep coming.

Limits: MAX_DRONES / MAX_PROJECTILES per room (astranet.examples.coop.sim); 4 players (the
matchmaker's room capacity) are assumed only for spawn spacing.
Benchmark: benchmarks/coop_tick.py.
"""

from __future__ import annotations

import math
import zlib

import esper
import numpy as np

from astranet.ecs import ColumnStore, NetEntity
from astranet.examples.coop.components import ARENA, PLAYER, PROJECTILE, SCHEMA, TEAM, snap_pos
from astranet.examples.coop.input import MAX_MOVE_SQ, STAND_STILL, Command, decode_command
from astranet.examples.coop.sim import MAX_PROJECTILES, PLAYER_HP, step_avatar
from astranet.examples.coop.systems import add_coop_systems
from astranet.game import Game, SimContext

__all__ = ["SPAWN_RADIUS", "Coop", "fire_ready", "game"]

# Players start on a small ring around the centre, far from the edge where drones appear.
SPAWN_RADIUS = 6.0


def fire_ready(store: ColumnStore, net_id: int) -> bool:
    """Whether the player ``net_id`` may set FIRE in its next input (alive, weapon cooled)."""
    row = store.rows([net_id])
    return bool(store["Health.hp"][row][0] > 0 and store["Weapon.cooldown"][row][0] == 0)


class Coop(Game):
    """Up to four players against growing waves of drones. See astranet/examples/coop/README.md."""

    name = "coop"
    schema = SCHEMA

    def setup(self, sim: SimContext) -> None:
        # The team entity holds the shared score and wave; the first wave starts when the
        # first player arrives (WaveSystem), so an empty room costs nothing to tick.
        sim.store.spawn(1, Body__kind=TEAM)
        add_coop_systems()

    def spawn_player(self, sim: SimContext, player_id: str) -> int:
        # A deterministic spot per player id (tests and replays are reproducible).
        angle = (zlib.crc32(player_id.encode()) % 360) * math.pi / 180.0
        start = snap_pos(np.array([math.cos(angle), math.sin(angle)]) * SPAWN_RADIUS)
        start = np.clip(start, -ARENA, ARENA)
        net_id = int(
            sim.store.spawn(1, Body__pos=start, Body__kind=PLAYER, Health__hp=PLAYER_HP)[0]
        )
        esper.create_entity(NetEntity(net_id))
        return net_id

    def decode_input(self, blob: bytes) -> Command:
        return decode_command(blob)

    def empty_input(self) -> Command:
        return STAND_STILL

    def check_input(self, sim: SimContext, net_id: int, command: Command) -> str | None:
        if command.move_sq > MAX_MOVE_SQ:
            return "impossible speed"
        if command.fire and not fire_ready(sim.store, net_id):
            alive = bool(sim.store["Health.hp"][sim.store.rows([net_id])][0] > 0)
            if alive:  # a downed player's FIRE is simply ignored
                return "fire rate"
        return None

    def apply_input(self, sim: SimContext, net_id: int, command: Command) -> None:
        fired = step_avatar(sim.store, net_id, command, sim.dt_s)
        if fired and sim.authoritative:
            _spawn_projectile(sim.store, net_id)


def _spawn_projectile(store: ColumnStore, shooter: int) -> None:
    """A shot from the shooter's position along its (just set) aim; lost at the room cap."""
    if int((store["Body.kind"] == PROJECTILE).sum()) >= MAX_PROJECTILES:
        return
    row = store.rows([shooter])
    store.spawn(
        1,
        Body__pos=store["Body.pos"][row],
        Body__kind=PROJECTILE,
        Body__heading=store["Body.heading"][row],
    )


game = Coop()
