"""The coop visual client run as a person would: a real server on 127.0.0.1 (in-process, port
0), the client as a subprocess with SDL's dummy video driver, ``--bot --screenshot``; then the
PNG is checked for the window size, content, the own avatar and drones. Failure paths: a dead
URL and an unknown room exit non-zero with one clear line and no traceback."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from astranet.client import ClientWorld
from astranet.examples.coop import ARENA, PLAYER, decode_command, game
from astranet.examples.coop.client import (
    ARENA_PX,
    DRONE_COLOUR,
    EXIT_CONNECT,
    EXIT_JOIN,
    HUD_PX,
    MARGIN_PX,
    OWN_COLOUR,
    WINDOW_SIZE,
    Pilot,
    to_screen,
)
from astranet.server.app import GameServer

pytestmark = pytest.mark.timeout(40)

REPO_ROOT = Path(__file__).resolve().parents[2]
# The client imports numpy/pygame and connects in about a second; 3 s of play on top.
CLIENT_TIMEOUT_S = 25.0


async def run_client(*args: str) -> tuple[int, str, str]:
    """Run ``python -m astranet.examples.coop.client ARGS`` headless; (status, stdout, stderr)."""
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    env.pop("AW_WS_URL", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "astranet.examples.coop.client",
        *args,
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def load_png(path: Path) -> np.ndarray:
    """(width, height, 3) uint8 pixels of a PNG."""
    import pygame  # only here: the client module already set PYGAME_HIDE_SUPPORT_PROMPT

    surface = pygame.image.load(str(path))
    return pygame.surfarray.array3d(surface)


def pixels_of(image: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int(np.all(image == np.array(colour, np.uint8), axis=-1).sum())


async def test_bot_plays_and_saves_a_screenshot(server: GameServer, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    status, stdout, stderr = await run_client(
        "--url",
        f"ws://127.0.0.1:{server.ws_port}",
        "--bot",
        "--duration",
        "3",
        "--screenshot",
        str(shot),
        "--screenshot-after",
        "2",
    )
    assert status == 0, stderr
    assert "Traceback" not in stderr
    assert "joined room" in stdout
    assert f"screenshot {shot}" in stdout
    image = load_png(shot)
    assert image.shape == (*WINDOW_SIZE, 3)
    assert image.std() > 10.0  # not a blank frame
    assert pixels_of(image, OWN_COLOUR) > 50  # our avatar (a 9 px disc) is drawn
    assert pixels_of(image, DRONE_COLOUR) > 20  # wave 1's drones are on screen


async def test_screenshot_is_saved_at_exit_when_duration_ends_first(
    server: GameServer, tmp_path: Path
) -> None:
    shot = tmp_path / "early.png"
    status, _, stderr = await run_client(
        "--url",
        f"ws://127.0.0.1:{server.ws_port}",
        "--bot",
        "--duration",
        "0.5",
        "--screenshot",
        str(shot),
        "--screenshot-after",
        "60",
        "--no-overlay",
    )
    assert status == 0, stderr
    assert load_png(shot).shape == (*WINDOW_SIZE, 3)


def closed_port() -> int:
    """A 127.0.0.1 port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_wrong_url_exits_with_a_clear_message(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{closed_port()}"
    status, stdout, stderr = await run_client(
        "--url", url, "--bot", "--duration", "1", "--screenshot", str(tmp_path / "never.png")
    )
    assert status == EXIT_CONNECT
    assert f"cannot connect to {url}" in stderr
    assert "Traceback" not in stderr + stdout
    assert not (tmp_path / "never.png").exists()


async def test_unknown_room_is_a_refused_join(server: GameServer) -> None:
    status, stdout, stderr = await run_client(
        "--url", f"ws://127.0.0.1:{server.ws_port}", "--room", "NoSuchRm", "--duration", "1"
    )
    assert status == EXIT_JOIN
    assert "join refused: room_not_found" in stderr
    assert "Traceback" not in stderr + stdout


# -- the pure pieces, without a window or a server ---------------------------------------------


class _SilentLink:
    """A link that never delivers anything (ClientWorld only stores it until stepped)."""

    def now_ms(self) -> float:
        return 0.0


class _TriggerHeld(Pilot):
    """A pilot whose player holds the trigger all the time."""

    def decide(self) -> tuple[float, float, float, bool]:
        return 0.0, 0.0, 0.0, True


def test_fire_is_only_sent_when_the_weapon_is_ready() -> None:
    world = ClientWorld(game, _SilentLink(), lambda: b"")  # type: ignore[arg-type]
    try:
        pilot = _TriggerHeld()
        assert decode_command(pilot()).fire is False  # no world yet
        pilot.world = world
        store = world.local.sim.store
        net_id = int(store.spawn(1, Body__kind=PLAYER, Health__hp=100, Weapon__cooldown=3)[0])
        world.local.net_id, world.local.ready = net_id, True
        assert decode_command(pilot()).fire is False  # cooling down
        store["Weapon.cooldown"][store.rows([net_id])] = 0
        assert decode_command(pilot()).fire is True
        store["Health.hp"][store.rows([net_id])] = 0
        assert decode_command(pilot()).fire is False  # downed
    finally:
        world.close()


def test_to_screen_maps_the_arena_corners_with_y_up() -> None:
    corners = np.array([[-ARENA, ARENA], [ARENA, -ARENA], [0.0, 0.0]])
    screen = to_screen(corners)
    top_left = (MARGIN_PX, HUD_PX + MARGIN_PX)
    assert screen[0].tolist() == list(top_left)
    assert screen[1].tolist() == [top_left[0] + ARENA_PX, top_left[1] + ARENA_PX]
    assert screen[2].tolist() == [top_left[0] + ARENA_PX // 2, top_left[1] + ARENA_PX // 2]
