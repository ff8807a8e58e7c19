"""The Game interface (load_game) and the dots example's input, sanity and movement rules."""

from __future__ import annotations

import struct

import esper
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.ecs import ColumnStore
from astranet.errors import ConfigurationError
from astranet.examples.dots import ARENA, GRID, SPEED, Dots, encode_input, game, move_avatar
from astranet.game import Game, InputError, SimContext, load_game


def test_load_game_returns_the_object_or_instantiates_a_class() -> None:
    assert load_game("astranet.examples.dots:game") is game
    assert isinstance(load_game("astranet.examples.dots:Dots"), Dots)


@pytest.mark.parametrize(
    "spec",
    [
        "astranet.examples.dots",
        "no.such.module:game",
        "astranet.examples.dots:nothing",
        "astranet.game:Game",
    ],
)
def test_load_game_refuses_bad_specs_with_a_configuration_error(spec: str) -> None:
    with pytest.raises(ConfigurationError, match="--game"):
        load_game(spec)


def test_base_game_defaults() -> None:
    assert Game().empty_input() is None
    assert Game().check_input(SimContext(ColumnStore(game.schema)), 1, object()) is None


@given(st.binary(max_size=8))
@settings(max_examples=500)
def test_dots_decode_input_accepts_exactly_two_bytes(blob: bytes) -> None:
    if len(blob) == 2:
        assert game.decode_input(blob) == struct.unpack("<bb", blob)
    else:
        with pytest.raises(InputError):
            game.decode_input(blob)


@given(st.floats(-1, 1), st.floats(-1, 1))
@settings(max_examples=500)
def test_encoded_unit_inputs_pass_the_sanity_check(dx: float, dy: float) -> None:
    norm = max(1.0, (dx * dx + dy * dy) ** 0.5)
    command = game.decode_input(encode_input(dx / norm, dy / norm))
    assert game.check_input(SimContext(ColumnStore(game.schema)), 1, command) is None


def test_faster_than_unit_input_is_impossible_speed() -> None:
    sim = SimContext(ColumnStore(game.schema))
    assert game.check_input(sim, 1, (127, 127)) == "impossible speed"
    assert game.check_input(sim, 1, (-128, 0)) == "impossible speed"


@pytest.fixture
def sim() -> SimContext:
    esper.switch_world("test-game")
    context = SimContext(ColumnStore(game.schema), room_id="AbCd1234")
    yield context
    esper.switch_world("default")
    esper.delete_world("test-game")


def test_spawn_is_deterministic_per_player_and_on_the_grid(sim: SimContext) -> None:
    game.setup(sim)
    a = game.spawn_player(sim, "alice")
    pos = sim.store["Body.pos"][sim.store.rows([a])][0]
    assert np.array_equal(pos * GRID, np.round(pos * GRID))
    other = SimContext(ColumnStore(game.schema), room_id="AbCd1234")
    b = game.spawn_player(other, "alice")
    assert np.array_equal(other.store["Body.pos"][other.store.rows([b])][0], pos)
    game.despawn_player(sim, "alice", a)
    assert not sim.store.contains([a])[0]


@given(st.lists(st.tuples(st.integers(-89, 89), st.integers(-89, 89)), max_size=60))
@settings(max_examples=200)
def test_move_avatar_stays_on_the_grid_inside_the_arena_at_bounded_speed(
    commands: list[tuple[int, int]],
) -> None:
    store = ColumnStore(game.schema)
    net_id = int(store.spawn(1, Body__pos=np.array([ARENA - 1, 0.0]), Body__kind=0)[0])
    previous = store["Body.pos"][store.rows([net_id])][0].copy()
    for command in commands:
        move_avatar(store, net_id, command, 1 / 30)
        pos = store["Body.pos"][store.rows([net_id])][0].copy()
        assert np.all(np.abs(pos) <= ARENA)
        assert np.array_equal(pos * GRID, np.round(pos * GRID))
        assert np.linalg.norm(pos - previous) <= SPEED / 30 + 2 / GRID
        previous = pos


def test_wanderers_move_and_bounce_inside_the_arena(sim: SimContext) -> None:
    game.setup(sim)
    before = sim.store["Body.pos"].copy()
    for tick in range(1, 600):
        sim.tick = tick
        esper.process(sim)
    after = sim.store["Body.pos"]
    assert not np.array_equal(before, after)
    assert np.all(np.abs(after) <= ARENA)
