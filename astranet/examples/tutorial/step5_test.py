"""Tutorial step 5: an end-to-end test of "orbs": a real server, a real client, on 127.0.0.1.

Copy it to your project's ``tests/`` and run ``pytest tests/test_orbs.py``. The server runs
in-process on free ports (``--ws-port 0``), the client is the real ``GameClient`` over a real
WebSocket, and the assertion reads the *server's* state as the client decoded it from snapshots.
tests/test_tutorial.py collects this very test, so the tutorial's version always passes.

Limits: needs pytest-asyncio (``asyncio_mode = "auto"``) and pytest-timeout.
Benchmark: none (a test; it takes about a second).
"""

from __future__ import annotations

# --8<-- [start:test]
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from astranet.client import ClientOptions, ClientWorld, GameClient, run_frames
from astranet.examples.tutorial.step2_game import encode_input, game
from astranet.server.app import GameServer
from astranet.server.config import parse_config


@pytest.fixture
async def orbs_server(tmp_path: Path) -> AsyncIterator[GameServer]:
    config = parse_config(
        [
            "--host",
            "127.0.0.1",
            "--ws-port",
            "0",
            "--http-port",
            "0",
            "--db",
            str(tmp_path / "orbs.db"),
        ],
        {},
    )
    server = GameServer(config, game)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown()


@pytest.mark.timeout(20)
async def test_holding_right_moves_the_player_right(orbs_server: GameServer) -> None:
    client = GameClient(
        ClientOptions(url=f"ws://127.0.0.1:{orbs_server.ws_port}", game_mode="orbs")
    )
    accepted = await client.connect()
    world = ClientWorld(game, client, lambda: encode_input(1.0, 0.0), tick_hz=accepted.tick_hz)
    try:
        await run_frames(world, duration_s=1.0)
        server_state = world.replica.store  # the server's truth, decoded from snapshots
        x, y = server_state["Body.pos"][server_state.rows([accepted.entity])[0]]
        assert 2.0 < x <= 8.0  # up to one second at SPEED = 8 units/s, minus the round trip
        assert y == 0.0
        # What the player sees is predicted: at least as far right as the server has got.
        predicted = world.view.row(accepted.entity)  # flattened fields; Body.pos x comes first
        assert predicted is not None and predicted[0] >= x
    finally:
        await client.close()
        world.close()


# --8<-- [end:test]
