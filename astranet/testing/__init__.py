"""astranet.testing: test your game the way players meet it (bevy_replicon's test_app).

    TestServer   serve a Game in-process on 127.0.0.1 (free ports), optionally behind a
                 LinkConditioner; join N clients; run for a duration or a number of ticks;
                 read /rooms, /metrics and any side-port path
    TestClient   one real WebSocket client: joins like a real client (signed inputs, resume),
                 records every message, decodes snapshots into the server's state as it saw it,
                 and can also send anything (to test how the server treats bad input)
    FakeClock    a clock a test moves by hand, for every ``clock=`` argument
    metric_value one sample of a Prometheus exposition

A game's test, with pytest-asyncio (``asyncio_mode = "auto"``)::

    from astranet.testing import TestServer
    from mygame import encode_input, game

    async def test_holding_right_moves_right():
        async with TestServer(game) as server:
            (player,) = await server.join(1, game_mode="mygame")
            frame = await player.send_input(encode_input(1.0, 0.0))
            await player.applied(frame.seq)
            assert player.value("Body.pos")[0] > 0

Guide: docs/tutorial.md (step 5). The project's own tests use these too.
"""

from astranet.net.linkconditioner import LinkProfile
from astranet.testing.client import RECV_TIMEOUT_S, TestClient
from astranet.testing.clock import FakeClock
from astranet.testing.server import TestServer, metric_value

__all__ = ["RECV_TIMEOUT_S", "FakeClock", "LinkProfile", "TestClient", "TestServer", "metric_value"]
