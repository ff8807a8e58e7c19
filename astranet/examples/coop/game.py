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

Shots (lag compensation): a FIRE input that states the client's view tick (every library
client does) is a hitscan validated against the drones *as that client drew them*
(``sim.rewind``, astranet.replication.rewind): the first drone within HIT_RADIUS of the aim ray
loses one hp and the shot is spent. A shot that misses, or comes from a client that states no
view, flies on as a projectile, as before.

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
from astranet.examples.coop.components import (
    ARENA,
    DRONE,
    PLAYER,
    PROJECTILE,
    SCHEMA,
    TEAM,
    snap_pos,
)
from astranet.examples.coop.input import MAX_MOVE_SQ, STAND_STILL, Command, decode_command
from astranet.examples.coop.sim import (
    HIT_RADIUS,
    MAX_PROJECTILES,
    PLAYER_HP,
    hitscan,
    step_avatar,
)
from astranet.examples.coop.systems import add_coop_systems
from astranet.game import Game, SimContext

__all__ = ["SPAWN_RADIUS", "Coop", "fire_ready", "game"]

# Players start on a small ring around the centre, far from the edge where drones appear.
SPAWN_RADIUS = 6.0


def fire_ready(store: ColumnStore, net_id: int) -> bool:
    """Whether the player ``net_id`` may set FIRE in its next input (alive, weapon cooled)."""
    row = store.row(net_id)
    return bool(store["Health.hp"][row] > 0 and store["Weapon.cooldown"][row] == 0)


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
        if command.fire:
            store = sim.store
            row = store.row(net_id)
            # A downed player's FIRE is simply ignored; a living one's needs a cooled weapon.
            if store["Health.hp"][row] > 0 and store["Weapon.cooldown"][row] != 0:
                return "fire rate"
        return None

    def apply_input(self, sim: SimContext, net_id: int, command: Command) -> None:
        fired = step_avatar(sim.store, net_id, command, sim.dt_s)
        if not (fired and sim.authoritative):
            return
        if sim.view_tick is not None and _compensated_hit(sim, net_id):
            return  # the shot was spent on the drone the shooter had in its sights
        _spawn_projectile(sim.store, net_id)


def _compensated_hit(sim: SimContext, shooter: int) -> bool:
    """Lag-compensated hitscan: does the aim ray cross a drone *as the shooter saw it*?

    The drones are rewound to the input's view tick (``sim.rewind``), the ray starts at the
    shooter's position now (the client predicted it exactly). A hit costs the drone one hp
    (CombatSystem kills and scores it later in this tick, as for projectile hits).
    """
    view = sim.rewind(sim.view_tick)
    drones = np.flatnonzero(view.field("Body.kind")[:, 0] == DRONE)
    store = sim.store
    row = store.row(shooter)
    target = hitscan(
        store["Body.pos"][row],
        float(store["Body.heading"][row]),
        view.field("Body.pos")[drones],
        HIT_RADIUS,
    )
    if target < 0:
        return False
    victim = view.net_ids[drones[target]]
    if not bool(store.contains([victim])[0]):
        return True  # already dead this tick: the shot is still spent on it
    victim_row = store.rows([victim])
    store["Health.hp"][victim_row] = np.maximum(store["Health.hp"][victim_row] - 1, 0)
    return True


def _spawn_projectile(store: ColumnStore, shooter: int) -> None:
    """A shot from the shooter's position along its (just set) aim; lost at the room cap."""
    if np.count_nonzero(store["Body.kind"] == PROJECTILE) >= MAX_PROJECTILES:
        return
    row = store.rows([shooter])
    store.spawn(
        1,
        Body__pos=store["Body.pos"][row],
        Body__kind=PROJECTILE,
        Body__heading=store["Body.heading"][row],
    )


game = Coop()
