"""astranet/examples/coop/sim.py: the pure vectorised steps (chase, projectiles, hits, contacts,
waves)
and the player step shared with prediction."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from astranet.ecs import quantize
from astranet.examples.coop import ARENA, Command
from astranet.examples.coop import sim as coop_sim
from astranet.examples.coop.components import AIM_BITS, GRID, snap_finite_turns, snap_heading
from astranet.examples.coop.sim import (
    CONTACT_DAMAGE,
    FIRE_INTERVAL_INPUTS,
    MAX_DRONES,
    PLAYER_SPEED,
    advance_projectiles,
    chase,
    drone_hp_for_wave,
    drone_speeds,
    resolve_combat,
    resolve_contacts,
    resolve_hits,
    step_avatar,
    wave_size,
    wave_spawn_positions,
)

from .conftest import CoopWorld


def on_grid(values: np.ndarray) -> bool:
    scaled = np.asarray(values, dtype=np.float64) * GRID
    return bool(np.all(scaled == np.round(scaled)))


def test_chase_moves_each_drone_toward_its_nearest_target_without_overshoot() -> None:
    drones = np.array([[-10.0, 0.0], [10.0, 0.0], [0.5, 0.0]])
    targets = np.array([[-20.0, 0.0], [20.0, 0.0]])
    moved, heading = chase(drones, np.array([1.0, 1.0, 100.0]), targets)
    assert moved.tolist() == [[-11.0, 0.0], [11.0, 0.0], [20.0, 0.0]]
    assert heading[0] == pytest.approx(-np.pi) and heading[1] == 0.0


def test_chase_without_targets_leaves_drones_in_place() -> None:
    drones = np.array([[1.0, 2.0]])
    moved, _ = chase(drones, np.array([1.0]), np.zeros((0, 2)))
    assert moved.tolist() == [[1.0, 2.0]]


coords = hnp.arrays(
    np.float64, st.tuples(st.integers(0, 40), st.just(2)), elements=st.floats(-ARENA, ARENA)
)


@settings(max_examples=300)
@given(
    coords,
    hnp.arrays(
        np.float64, st.tuples(st.integers(1, 4), st.just(2)), elements=st.floats(-ARENA, ARENA)
    ),
)
def test_chase_stays_on_grid_inside_arena_and_never_gets_farther(
    drones: np.ndarray, targets: np.ndarray
) -> None:
    drones = coop_sim.snap_pos(drones)
    moved, _ = chase(drones, np.full(len(drones), 0.2), targets)
    # The store's float32 columns give the same answer (grid values are exact in float32).
    targets = coop_sim.snap_pos(targets)
    as_float64 = chase(drones, np.full(len(drones), 0.2), targets)
    as_float32 = chase(
        drones.astype(np.float32), np.full(len(drones), 0.2), targets.astype(np.float32)
    )
    assert all(np.array_equal(a, b) for a, b in zip(as_float64, as_float32, strict=True))
    assert on_grid(moved) and np.all(np.abs(moved) <= ARENA)
    before = np.sqrt(((drones[:, None] - targets[None]) ** 2).sum(-1)).min(axis=1)
    after = np.sqrt(((moved[:, None] - targets[None]) ** 2).sum(-1)).min(axis=1)
    assert np.all(after <= before + 1.0 / GRID)  # snapping may cost at most one grid step


@settings(max_examples=300)
@given(
    st.sampled_from([np.float64, np.float32]).flatmap(
        lambda dtype: hnp.arrays(dtype, st.integers(0, 20), elements=st.floats(width=32))
    )
)
def test_snap_heading_is_what_clients_decode(radians: np.ndarray) -> None:
    codes = quantize.quantize_angle(radians, AIM_BITS)
    snapped = snap_heading(radians)
    assert snapped.dtype == np.float32
    assert np.array_equal(snapped, quantize.dequantize_angle(codes, AIM_BITS))


def test_snap_heading_wraps_a_full_turn_to_code_zero() -> None:
    # A tiny negative angle is a whole turn minus nothing: it rounds up to code 256 (= 0).
    radians = np.array([-1e-300, -1e-9, np.nextafter(np.pi, 4.0), -np.pi, 0.0, -0.0])
    codes = quantize.quantize_angle(radians, AIM_BITS)
    assert np.array_equal(snap_heading(radians), quantize.dequantize_angle(codes, AIM_BITS))


@settings(max_examples=300)
@given(hnp.arrays(np.float64, st.integers(0, 20), elements=st.floats(-4.0, 4.0)))
def test_snap_finite_turns_is_snap_heading_for_finite_angles(radians: np.ndarray) -> None:
    # chase's heading path (arctan2 is always finite) skips snap_heading's finiteness check.
    assert np.array_equal(snap_finite_turns(radians / (2.0 * np.pi)), snap_heading(radians))


def test_drone_speeds_vary_per_id_within_bounds() -> None:
    speeds = drone_speeds(np.arange(1, 1001))
    assert speeds.min() >= 0.75 * coop_sim.DRONE_SPEED
    assert speeds.max() <= 1.25 * coop_sim.DRONE_SPEED
    assert len(np.unique(speeds)) > 500


def test_projectiles_fly_along_heading_and_leave_the_arena() -> None:
    pos = np.array([[0.0, 0.0], [ARENA - 0.5, 0.0]])
    moved, inside = advance_projectiles(pos, np.array([np.pi / 2, 0.0], dtype=np.float32), 1 / 30)
    assert moved[0].tolist() == [0.0, 1.0]
    assert inside.tolist() == [True, False]


def test_hits_pick_the_nearest_drone_and_count_per_drone() -> None:
    shots = np.array([[0.0, 0.0], [0.1, 0.0], [30.0, 30.0]])
    drones = np.array([[0.9, 0.0], [0.2, 0.0], [50.0, 50.0]])
    spent, hits = resolve_hits(shots, drones)
    assert spent.tolist() == [True, True, False]
    assert hits.tolist() == [0, 2, 0]


def test_hits_with_nothing_to_hit() -> None:
    spent, hits = resolve_hits(np.zeros((0, 2)), np.ones((3, 2)))
    assert spent.shape == (0,) and hits.tolist() == [0, 0, 0]
    spent, hits = resolve_hits(np.ones((2, 2)), np.zeros((0, 2)))
    assert spent.tolist() == [False, False] and hits.shape == (0,)


def test_contacts_damage_the_touched_player() -> None:
    drones = np.array([[1.0, 0.0], [1.1, 0.0], [10.0, 0.0]])
    players = np.array([[0.0, 0.0], [-5.0, 0.0]])
    exploded, damage = resolve_contacts(drones, players)
    assert exploded.tolist() == [True, True, False]
    assert damage.tolist() == [2 * CONTACT_DAMAGE, 0]


def test_chunked_pair_matrix_gives_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    shots, drones = rng.uniform(-5, 5, (97, 2)), rng.uniform(-5, 5, (41, 2))
    whole = resolve_hits(shots, drones)
    monkeypatch.setattr(coop_sim, "MAX_PAIR_CELLS", 50)  # forces chunks of one projectile
    chunked = resolve_hits(shots, drones)
    assert np.array_equal(whole[0], chunked[0]) and np.array_equal(whole[1], chunked[1])


@settings(max_examples=300)
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(0, 12), st.just(2)), elements=st.floats(-3, 3)),
    hnp.arrays(np.float64, st.tuples(st.integers(0, 12), st.just(2)), elements=st.floats(-3, 3)),
    hnp.arrays(np.float64, st.tuples(st.integers(0, 4), st.just(2)), elements=st.floats(-3, 3)),
)
def test_combat_matrix_answers_as_hits_and_contacts_do(
    shots: np.ndarray, drones: np.ndarray, players: np.ndarray
) -> None:
    # On the 1/64 grid, so exact ties (the lowest index wins) come up, too.
    shots, drones, players = (coop_sim.snap_pos(a) for a in (shots, drones, players))
    # As the system calls it: the store's float32 columns (grid values are exact in float32).
    spent, hits, touching, victim = resolve_combat(
        *(a.astype(np.float32) for a in (shots, drones, players))
    )
    expected_spent, expected_hits = resolve_hits(shots, drones)
    assert np.array_equal(spent, expected_spent) and np.array_equal(hits, expected_hits)
    exploded, damage = resolve_contacts(drones, players)
    assert np.array_equal(touching, exploded)
    combined = np.bincount(victim[touching], minlength=len(players)) * CONTACT_DAMAGE
    assert np.array_equal(combined, damage)


@settings(max_examples=300)
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(0, 12), st.just(2)), elements=st.floats(-9, 9)),
    hnp.arrays(np.float64, st.tuples(st.integers(1, 12), st.just(2)), elements=st.floats(-9, 9)),
    hnp.arrays(np.float64, st.tuples(st.integers(0, 4), st.just(2)), elements=st.floats(-9, 9)),
)
def test_combat_matrix_with_or_without_anything_in_reach_equals_the_separate_passes(
    shots: np.ndarray, drones: np.ndarray, players: np.ndarray
) -> None:
    # Spread out, so most examples take the "nothing within reach" shortcut and some do not:
    # every output (victim and dtypes included) is what the two separate functions give.
    shots, drones, players = (coop_sim.snap_pos(a) for a in (shots, drones, players))
    combined = resolve_combat(*(a.astype(np.float32) for a in (shots, drones, players)))
    separate = (
        *resolve_hits(shots, drones),
        *coop_sim._nearest_within(drones, players, coop_sim.CONTACT_RADIUS),
    )
    for got, expected in zip(combined, separate, strict=True):
        assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_combat_matrix_past_the_cell_limit_gives_the_same_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(3)
    shots, drones = rng.uniform(-5, 5, (30, 2)), rng.uniform(-5, 5, (20, 2))
    players = rng.uniform(-5, 5, (4, 2))
    whole = resolve_combat(shots, drones, players)
    monkeypatch.setattr(coop_sim, "MAX_PAIR_CELLS", 50)  # the two functions, chunked
    chunked = resolve_combat(shots, drones, players)
    assert all(np.array_equal(a, b) for a, b in zip(whole, chunked, strict=True))


def test_waves_grow_and_are_capped() -> None:
    sizes = [wave_size(k) for k in range(1, 100)]
    assert sizes[:3] == [8, 16, 24]
    assert sizes == sorted(sizes)
    assert max(sizes) == MAX_DRONES
    assert drone_hp_for_wave(1) == 1 and drone_hp_for_wave(4) == 2
    assert drone_hp_for_wave(10_000) == coop_sim.MAX_DRONE_HP


def test_wave_spawns_are_on_the_edge_and_reproducible() -> None:
    spots = wave_spawn_positions(1234, 3, 24)
    assert np.array_equal(spots, wave_spawn_positions(1234, 3, 24))
    assert not np.array_equal(spots, wave_spawn_positions(1234, 4, 24))
    assert not np.array_equal(spots, wave_spawn_positions(999, 3, 24))
    assert np.all(np.abs(spots).max(axis=1) == ARENA) and on_grid(spots)


def test_step_avatar_moves_on_grid_and_clamps_to_the_arena(
    make_world: Callable[..., CoopWorld],
) -> None:
    world = make_world()
    me = world.join("alice")
    start = world.store["Body.pos"][world.store.rows([me])[0]].copy()
    step_avatar(world.store, me, Command(127, 0, 64), 1 / 30)
    pos = world.store["Body.pos"][world.store.rows([me])[0]]
    assert pos[0] - start[0] == pytest.approx(PLAYER_SPEED / 30, abs=1 / GRID)
    assert pos[1] == start[1] and on_grid(pos)
    assert world.store["Body.heading"][world.store.rows([me])[0]] == pytest.approx(np.pi / 2)
    for _ in range(400):
        step_avatar(world.store, me, Command(127, 127 // 2, 0), 1 / 30)
    assert world.store["Body.pos"][world.store.rows([me])[0]][0] == ARENA


def test_weapon_fires_once_every_interval_and_downed_players_do_nothing(
    make_world: Callable[..., CoopWorld],
) -> None:
    world = make_world()
    me = world.join("alice")
    shots = [step_avatar(world.store, me, Command(fire=True), 1 / 30) for _ in range(13)]
    assert [i for i, fired in enumerate(shots) if fired] == [
        0,
        FIRE_INTERVAL_INPUTS,
        2 * FIRE_INTERVAL_INPUTS,
    ]
    row = world.store.rows([me])[0]
    world.store["Health.hp"][row] = 0
    before = world.store["Body.pos"][row].copy()
    assert not step_avatar(world.store, me, Command(127, 0, 0, True), 1 / 30)
    assert np.array_equal(world.store["Body.pos"][row], before)
