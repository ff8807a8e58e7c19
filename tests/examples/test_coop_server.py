"""The coop game served end to end: an in-process server on 127.0.0.1 and one real WebSocket
client (astranet.testing's TestClient) that joins, plays and decodes its snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from astranet.examples.coop import DRONE, PLAYER, TEAM, encode_input, fire_ready, game
from astranet.examples.coop.sim import wave_size
from astranet.testing import TestServer

pytestmark = pytest.mark.timeout(30)

# Snapshots to read at most while waiting for a condition (~10 s at 30 Hz).
MAX_SNAPSHOTS = 300


def count(store, kind: int) -> int:
    return int((store["Body.kind"] == kind).sum())


async def test_a_client_joins_sees_drones_and_its_inputs_are_applied() -> None:
    async with TestServer(game) as server:
        (player,) = await server.join(1)
        me = player.entity
        store = player.state  # decoded (and acked) from every snapshot the client reads

        for _ in range(MAX_SNAPSHOTS):
            await player.next_snapshot()
            if count(store, DRONE):
                break
        assert count(store, DRONE) == wave_size(1)
        assert count(store, TEAM) == 1 and count(store, PLAYER) == 1
        team = np.flatnonzero(store["Body.kind"] == TEAM)[0]
        assert store["Team.wave"][team] == 1
        start = store["Body.pos"][store.rows([me])[0]].copy()

        # Play: move right, fire whenever the replicated cooldown says the weapon is ready.
        for _ in range(20):
            frame = await player.send_input(encode_input(1.0, 0.0, 0.0, fire_ready(store, me)))
            await player.next_snapshot()
        await player.applied(frame.seq)
        assert store["Body.pos"][store.rows([me])[0]][0] > start[0]
