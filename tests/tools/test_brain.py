"""BotBrain and Personality: seeded variety, and inputs the server never refuses."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.ecs import ColumnStore
from astranet.examples.coop import DRONE, PLAYER, SCHEMA, decode_command, game
from astranet.examples.coop.brain import BotBrain, Personality, Style
from astranet.game import SimContext


def _arena(
    drones: list[tuple[float, float]], me: tuple[float, float] = (0.0, 0.0), hp: int = 100
) -> tuple[SimContext, int]:
    """A predicted-store stand-in: one player and some drones (no server, no systems)."""
    store = ColumnStore(SCHEMA)
    net_id = int(store.spawn(1, Body__pos=np.array(me), Body__kind=PLAYER, Health__hp=hp)[0])
    for xy in drones:
        store.spawn(1, Body__pos=np.array(xy), Body__kind=DRONE, Health__hp=1)
    return SimContext(store, 0, 1 / 30, "TESTROOM", authoritative=False), net_id


def _brain(seed: int, sim: SimContext, net_id: int) -> BotBrain:
    return BotBrain(Personality.draw(random.Random(seed)), seed, sim.store, net_id)


def _play(brain: BotBrain, sim: SimContext, net_id: int, ticks: int) -> list[bytes]:
    """Run the brain as the client's prediction does: decide, then apply the decision."""
    blobs = []
    for _ in range(ticks):
        blob = brain()
        blobs.append(blob)
        command = decode_command(blob)
        assert game.check_input(sim, net_id, command) is None, command
        game.apply_input(sim, net_id, command)
    return blobs


def test_personality_is_a_pure_function_of_the_seed() -> None:
    assert Personality.draw(random.Random(5)) == Personality.draw(random.Random(5))
    drawn = [Personality.draw(random.Random(seed)) for seed in range(40)]
    assert {p.style for p in drawn} == set(Style)
    assert len({p.reaction_ticks for p in drawn}) > 3
    for p in drawn:
        assert 0 < p.speed < 1 and p.reaction_ticks >= 1 and p.trigger_rad > 0


def test_bots_with_different_seeds_are_not_in_lockstep() -> None:
    runs = []
    for seed in (1, 2):
        sim, net_id = _arena([(20.0, 5.0), (-15.0, -30.0)])
        runs.append(_play(_brain(seed, sim, net_id), sim, net_id, 60))
    assert runs[0] != runs[1]
    again_sim, again_id = _arena([(20.0, 5.0), (-15.0, -30.0)])
    assert _play(_brain(1, again_sim, again_id), again_sim, again_id, 60) == runs[0]


def test_fires_at_a_drone_in_range_but_only_when_the_weapon_is_ready() -> None:
    sim, net_id = _arena([(10.0, 0.0)])
    brain = _brain(3, sim, net_id)
    blobs = _play(brain, sim, net_id, 120)
    fired = [i for i, blob in enumerate(blobs) if decode_command(blob).fire]
    assert len(fired) >= 5  # the aim slews onto the target, then 1 shot per 6 inputs at most
    assert all(later - earlier >= 6 for earlier, later in itertools.pairwise(fired))
    assert brain.shots == len(fired)


def test_never_fires_without_a_target_or_while_downed() -> None:
    sim, net_id = _arena([])
    assert not any(decode_command(b).fire for b in _play(_brain(4, sim, net_id), sim, net_id, 90))
    downed, downed_id = _arena([(5.0, 0.0)], hp=0)
    brain = _brain(4, downed, downed_id)
    assert not any(decode_command(brain()).fire for _ in range(90))


def test_without_an_avatar_it_stands_still() -> None:
    brain = BotBrain(Personality.draw(random.Random(0)), 0)
    command = decode_command(brain())
    assert (command.move_x, command.move_y, command.fire) == (0, 0, False)


@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**31 - 1),
    drones=st.lists(st.tuples(st.floats(-60, 60), st.floats(-60, 60)), max_size=12),
    me=st.tuples(st.floats(-60, 60), st.floats(-60, 60)),
)
def test_every_input_passes_the_servers_sanity_check(seed: int, drones: list, me: tuple) -> None:
    sim, net_id = _arena(drones, me)
    blobs = _play(_brain(seed, sim, net_id), sim, net_id, 45)  # _play asserts check_input
    assert all(len(blob) == 4 for blob in blobs)
    pos = sim.store["Body.pos"][sim.store.rows([net_id])[0]]
    assert np.all(np.abs(pos) <= 60.0) and all(math.isfinite(v) for v in pos)
