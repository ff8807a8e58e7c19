"""The coop visual client run as a person would: a real server on 127.0.0.1 (in-process, port
0), the client as a subprocess with SDL's dummy video driver, ``--bot --screenshot``; then the
PNG is checked for the window size, content, the own avatar and drones. Failure paths: a dead
URL and an unknown room exit non-zero with one clear line and no traceback."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from astranet.game import load_game
from astranet.server.app import GameServer
from astranet.server.config import parse_config
from examples.coop.client import (
    DRONE_COLOUR,
    EXIT_CONNECT,
    EXIT_JOIN,
    OWN_COLOUR,
    WINDOW_SIZE,
)

pytestmark = pytest.mark.timeout(40)

REPO_ROOT = Path(__file__).resolve().parents[2]
# The client imports numpy/pygame and connects in about a second; 3 s of play on top.
CLIENT_TIMEOUT_S = 25.0


@pytest.fixture
async def server() -> AsyncIterator[GameServer]:
    config = parse_config(["--ws-port", "0", "--http-port", "0", "--host", "127.0.0.1",
                           "--game", "examples.coop:game"], {})
    running = GameServer(config, load_game(config.game))
    await running.start()
    try:
        yield running
    finally:
        await running.shutdown()


async def run_client(*args: str) -> tuple[int, str, str]:
    """Run ``python -m examples.coop.client ARGS`` headless; (status, stdout, stderr)."""
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    env.pop("AW_WS_URL", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.coop.client", *args, cwd=REPO_ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
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
        "--url", f"ws://127.0.0.1:{server.ws_port}", "--bot", "--duration", "3",
        "--screenshot", str(shot), "--screenshot-after", "2")
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
        server: GameServer, tmp_path: Path) -> None:
    shot = tmp_path / "early.png"
    status, _, stderr = await run_client(
        "--url", f"ws://127.0.0.1:{server.ws_port}", "--bot", "--duration", "0.5",
        "--screenshot", str(shot), "--screenshot-after", "60", "--no-overlay")
    assert status == 0, stderr
    assert load_png(shot).shape == (*WINDOW_SIZE, 3)


def closed_port() -> int:
    """A 127.0.0.1 port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_wrong_url_exits_with_a_clear_message(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{closed_port()}"
    status, stdout, stderr = await run_client("--url", url, "--bot", "--duration", "1",
                                              "--screenshot", str(tmp_path / "never.png"))
    assert status == EXIT_CONNECT
    assert f"cannot connect to {url}" in stderr
    assert "Traceback" not in stderr + stdout
    assert not (tmp_path / "never.png").exists()


async def test_unknown_room_is_a_refused_join(server: GameServer) -> None:
    status, stdout, stderr = await run_client(
        "--url", f"ws://127.0.0.1:{server.ws_port}", "--room", "NoSuchRm", "--duration", "1")
    assert status == EXIT_JOIN
    assert "join refused: room_not_found" in stderr
    assert "Traceback" not in stderr + stdout
