"""ThreadedClient: a non-asyncio game loop (a plain thread) drives the netcode.

The server runs as a separate process here, as it would for a real game: esper's worlds are
process-global, so an in-process server stepping its rooms on the test's loop while the game
thread steps the client world would race on ``esper.switch_world``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from astranet.client import ClientOptions, ClientWorld, ConnectFailed, ThreadedClient
from astranet.client.demo import BotInput
from astranet.examples.dots import encode_input
from tests.client.conftest import DOTS

SERVER_START_TIMEOUT_S = 15.0


@pytest.fixture
def server_url() -> Iterator[str]:
    """``astranet-server`` on free ports in a subprocess; yields its ws:// URL."""
    with tempfile.TemporaryDirectory() as scratch:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "astranet.server",
                "--game",
                "astranet.examples.dots:game",
                "--host",
                "127.0.0.1",
                "--ws-port",
                "0",
                "--http-port",
                "0",
                "--db",
                f"{scratch}/astranet.db",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            port = _listening_port(process)
            yield f"ws://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=10)


def _listening_port(process: subprocess.Popen[str]) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()  # the server logs each line promptly
        if not line:
            break
        found = re.search(r"listening ws=(\d+)", line)
        if found:
            return int(found.group(1))
    raise AssertionError("astranet-server did not report its port")


def _game_loop(world: ClientWorld, seconds: float) -> None:
    """What a pygame main loop does: step, draw, wait for the next frame."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        world.step()
        time.sleep(1 / 60)  # frame pacing of a blocking game loop


@pytest.mark.timeout(30)
def test_threaded_client_runs_the_netcode_from_a_plain_thread(server_url: str):
    threaded = ThreadedClient(ClientOptions(url=server_url, seed=3))
    accepted = threaded.start()
    world = ClientWorld(DOTS, threaded, BotInput(encode_input, seed=3), tick_hz=accepted.tick_hz)
    try:
        assert threaded.running
        _game_loop(world, 2.0)
        stats = world.reconciliation.stats
        assert stats.compared > 30 and stats.exact == stats.compared
        assert threaded.stats.inputs_sent > 30
        kinds = [event.kind.value for event in threaded.drain_events()]
        assert kinds[:2] == ["connected", "joined"]
    finally:
        threaded.stop()
        world.close()
    assert not threaded.running


@pytest.mark.timeout(30)
def test_threaded_start_raises_the_connect_error_in_the_caller():
    threaded = ThreadedClient(ClientOptions(url="ws://127.0.0.1:9", open_timeout_s=2))
    with pytest.raises(ConnectFailed, match=r"cannot connect to ws://127\.0\.0\.1:9"):
        threaded.start(timeout=10)
    threaded.stop()
    assert not threaded.running
