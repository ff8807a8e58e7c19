"""Smoke run of benchmarks/server_load.py: a real server subprocess, 1 room of 4 clients, ~3 s.

Asserts the ``--json`` contract (every key the issue names) and that the run is sane: all four
clients stayed connected, snapshots flowed and were acked into deltas, and every input was
answered by a snapshot. No timing is asserted (benchmarks measure; tests check behaviour),
except that latency must be finite and positive.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.ecs import ColumnStore
from astranet.examples.cubes import BOX, Cubes, encode_input, moving_rows

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "server_load.py"
REQUIRED_KEYS = (
    "clients",
    "late_tick_fraction",
    "tick_ms_p50",
    "tick_ms_p99",
    "server_cpu_percent",
    "snapshot_bytes_per_client_per_s",
    "input_to_snapshot_ms_p50",
    "input_to_snapshot_ms_p99",
)


def _smoke_run(*extra_args: str) -> dict:
    """Run the benchmark for 3 s on 1 room of 4 clients; its ``--json`` report."""
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--entities", "100", "--rooms", "1", "--duration", "3", "--warmup", "1"),
            *("--json", "--no-progress"),
            *extra_args,
        ],
        capture_output=True,
        text=True,
        timeout=80,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.timeout(90)
def test_smoke_run_reports_every_key_with_sane_values() -> None:
    report = _smoke_run()
    for key in REQUIRED_KEYS:
        assert key in report, key
        assert isinstance(report[key], int | float) and math.isfinite(report[key]), key
    assert report["clients"] == 4
    assert report["disconnects"] == 0
    assert report["server_exit_code"] == 0
    assert report["snapshot_bytes_per_client_per_s"] > 0
    assert report["snapshot_payload_bytes_per_client_per_s"] > 0
    assert report["full_snapshot_fraction"] < 0.5  # acks arrive, so deltas are used
    assert report["ticks"] > 0 and 0.0 <= report["late_tick_fraction"] <= 1.0
    assert 0 < report["input_to_snapshot_ms_p50"] <= report["input_to_snapshot_ms_p99"]
    assert report["latency_samples"] > 0 and report["latency_overflow"] == 0
    assert report["server_cpu_percent"] > 0
    assert report["input_phase"] == "spread"
    assert report["input_lead_ms"] is None and report["input_target_miss_fraction"] is None


@pytest.mark.timeout(90)
def test_smoke_run_with_inputs_aligned_to_the_server_tick() -> None:
    report = _smoke_run("--input-phase", "aligned", "--input-lead-ms", "10")
    for key in REQUIRED_KEYS:
        assert key in report, key
    assert report["input_phase"] == "aligned" and report["input_lead_ms"] == 10.0
    assert report["clients"] == 4 and report["disconnects"] == 0
    assert report["server_exit_code"] == 0
    assert report["inputs_per_client_per_s"] > 0
    assert report["latency_samples"] > 0 and report["latency_overflow"] == 0
    assert 0 < report["input_to_snapshot_ms_p50"] <= report["input_to_snapshot_ms_p99"]
    assert 0.0 <= report["input_target_miss_fraction"] <= 1.0  # timing is not asserted


def test_moving_subset_is_the_requested_fraction_evenly_spread() -> None:
    rows = moving_rows(1000, 0.1)
    assert len(rows) == 100 and (rows == range(0, 1000, 10)).all()
    assert len(moving_rows(100, 1.0)) == 100
    assert len(moving_rows(100, 0.0)) == 0


def test_cubes_config_from_environment_and_its_errors() -> None:
    from astranet.errors import ConfigurationError

    game = Cubes.from_environ(
        {"ASTRANET_CUBES_ENTITIES": "250", "ASTRANET_CUBES_MOVING_FRACTION": "1"}
    )
    assert (game.entities, game.moving_fraction) == (250, 1.0)
    for env in (
        {"ASTRANET_CUBES_ENTITIES": "lots"},
        {"ASTRANET_CUBES_MOVING_FRACTION": "2"},
        {"ASTRANET_CUBES_ENTITIES": "-1"},
    ):
        with pytest.raises(ConfigurationError):
            Cubes.from_environ(env)


def test_moving_cubes_move_and_stay_in_the_box_while_others_rest() -> None:
    from astranet.server.room import Room

    room = Room("Cubes123", "us-east", "bench", Cubes(200, 0.1))
    try:
        start = room.store["Cube.pos"].copy()
        for tick in range(300):  # 10 s: the fast cubes reach a wall and bounce
            room.step(tick)
        pos = room.store["Cube.pos"]
        moved = np.any(pos != start, axis=1)
        assert np.flatnonzero(moved).tolist() == moving_rows(200, 0.1).tolist()
        assert (pos >= 0).all() and (pos <= BOX).all()
    finally:
        room.close()


def test_avatar_input_moves_only_its_own_cube_and_sanity_refuses_overspeed() -> None:
    from astranet.game import SimContext

    game = Cubes(10, 0.0)
    sim = SimContext(ColumnStore(game.schema), room_id="Cubes123")
    sim.store.spawn(10)
    avatar = int(sim.store.spawn(1, Cube__pos=(500.0, 500.0))[0])
    before = sim.store["Cube.pos"].copy()
    game.apply_input(sim, avatar, game.decode_input(encode_input(1.0, 0.0)))
    after = sim.store["Cube.pos"]
    assert after[-1, 0] > 500.0 and after[-1, 1] == 500.0
    assert (after[:-1] == before[:-1]).all()
    assert game.check_input(sim, avatar, (127, 127)) == "impossible speed"
    assert game.check_input(sim, avatar, game.decode_input(encode_input(0.95, 0.3))) is None


def test_bounce_reflects_a_cube_off_the_wall_and_reverses_it() -> None:
    from astranet.examples.cubes import BounceSystem
    from astranet.game import SimContext

    game = Cubes(2, 1.0)
    sim = SimContext(ColumnStore(game.schema), dt_s=1 / 30)
    ids = sim.store.spawn(2, Cube__pos=np.array([[999.5, 10.0], [0.25, 500.0]]))
    system = BounceSystem(ids, np.array([[30.0, 0.0], [-15.0, 0.0]]))
    system.process(sim)
    assert sim.store["Cube.pos"].tolist() == [[999.5, 10.0], [0.25, 500.0]]
    assert system.velocities.tolist() == [[-30.0, 0.0], [15.0, 0.0]]


def _reference_bounce(pos: np.ndarray, vel: np.ndarray, dt_s: float) -> np.ndarray:
    """The bounce as first written (every step, no shortcut), for comparison."""
    moved = pos.astype(np.float64) + vel * dt_s
    below, above = moved < 0.0, moved > BOX
    moved = np.where(below, -moved, moved)
    moved = np.where(above, 2 * BOX - moved, moved)
    vel[below | above] *= -1
    return np.clip(moved, 0.0, BOX).astype(np.float32)


@settings(max_examples=200, deadline=None)
@given(
    xs=st.lists(
        st.one_of(st.floats(-5.0, BOX + 5.0), st.just(float("nan"))), min_size=2, max_size=8
    ),
    speed=st.floats(-600.0, 600.0),
)
def test_bounce_matches_the_reference_with_or_without_wall_hits(
    xs: list[float], speed: float
) -> None:
    from astranet.examples.cubes import BounceSystem
    from astranet.game import SimContext

    n = len(xs)
    sim = SimContext(ColumnStore(Cubes(0, 0.0).schema), dt_s=1 / 30)
    start = np.array([[x, 500.0] for x in xs], dtype=np.float32)
    ids = sim.store.spawn(n, Cube__pos=start)
    velocities = np.full((n, 2), speed)
    system = BounceSystem(ids, velocities)
    reference_vel = velocities.copy()
    expected = start
    for _ in range(12):  # several ticks: the cached per-tick step must follow every bounce
        expected = _reference_bounce(expected, reference_vel, sim.dt_s)
        system.process(sim)
        assert sim.store["Cube.pos"].tobytes() == expected.tobytes()
        assert system.velocities.tobytes() == reference_vel.tobytes()


@settings(max_examples=300, deadline=None)
@given(
    x=st.floats(0.0, BOX),
    y=st.floats(0.0, BOX),
    dx=st.integers(-127, 127),
    dy=st.integers(-127, 127),
)
def test_scalar_avatar_step_matches_the_vectorised_reference(
    x: float, y: float, dx: int, dy: int
) -> None:
    from astranet.examples.cubes import AVATAR_SPEED, GRID, move_avatar

    store = ColumnStore(Cubes(0, 0.0).schema)
    avatar = int(store.spawn(1, Cube__pos=(x, y))[0])
    start = store["Cube.pos"][0].astype(np.float64)
    move_avatar(store, avatar, (dx, dy), 1 / 30)
    moved = np.clip(start + np.array([dx, dy]) / 127.0 * AVATAR_SPEED / 30, 0.0, BOX)
    assert (
        store["Cube.pos"][0].tolist() == (np.round(moved * GRID) / GRID).astype(np.float32).tolist()
    )


def test_cubes_accepts_every_unit_direction_its_own_encoder_produces() -> None:
    game = Cubes(10, 0.1)
    for i in range(360):
        angle = 2 * math.pi * i / 360
        command = game.decode_input(encode_input(math.cos(angle), math.sin(angle)))
        assert game.check_input(None, 0, command) is None, (i, command)  # type: ignore[arg-type]
    assert game.check_input(None, 0, (127, 127)) == "impossible speed"  # type: ignore[arg-type]


def _loadclients():  # benchmarks/ is not a package: import the worker module by path
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_loadclients", SCRIPT.with_name("_loadclients.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(0, 2**32 - 1),
    tick_ms=st.integers(0, 2**64 - 1),
    blob=st.binary(max_size=300),
    sig=st.binary(min_size=16, max_size=16),
    ack=st.none() | st.integers(0, 2**32 - 1),
)
def test_load_clients_encode_input_frames_as_the_library_does(
    seq: int, tick_ms: int, blob: bytes, sig: bytes, ack: int | None
) -> None:
    from astranet.net.messages import InputFrame, encode

    expected = encode(InputFrame(seq, tick_ms, blob, sig, ack))
    assert LOADCLIENTS.input_frame_bytes(seq, tick_ms, blob, sig, ack) == expected


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(max_size=70_000), mask=st.binary(min_size=4, max_size=4))
def test_load_client_frames_are_masked_and_parse_back_with_websockets(
    payload: bytes, mask: bytes
) -> None:
    from websockets.frames import Frame, Opcode
    from websockets.streams import StreamReader

    data = LOADCLIENTS.masked_frame(2, payload, mask)
    assert data[1] & 0x80  # the MASK bit: every client frame is masked (RFC 6455 5.3)
    reader = StreamReader()
    reader.feed_data(data)
    parser = Frame.parse(reader.read_exact, mask=True)
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
    else:  # pragma: no cover - the whole frame was fed
        raise AssertionError("frame not parsed")
    assert frame.opcode is Opcode.BINARY and frame.fin and frame.data == payload


LOADCLIENTS = _loadclients()
