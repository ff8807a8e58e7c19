"""The coop game served end to end: an in-process GameServer on 127.0.0.1 and one real
WebSocket client (sans-I/O ClientConnection + websockets) that joins, plays and decodes its
snapshots with astranet.replication.Replica."""

from __future__ import annotations

import asyncio
from collections import deque

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection as WebSocket
from websockets.asyncio.client import connect

from astranet.examples.coop import DRONE, PLAYER, TEAM, encode_input, fire_ready
from astranet.examples.coop.sim import wave_size
from astranet.game import load_game
from astranet.net import ClientConnection, JoinAccepted, Snapshot
from astranet.replication import Replica
from astranet.server.app import GameServer

pytestmark = pytest.mark.timeout(30)

# Loopback replies arrive in milliseconds; this only turns a missing message into a failure.
RECV_TIMEOUT_S = 5.0
# Snapshots to read at most while waiting for a condition (~10 s at 30 Hz).
MAX_SNAPSHOTS = 300


class Player:
    """One client: the sans-I/O protocol object, its socket and its replica of the room."""

    def __init__(self, ws: WebSocket, conn: ClientConnection) -> None:
        self.ws, self.conn = ws, conn
        self.replica = Replica(load_game("astranet.examples.coop:game").schema)
        self.last_input_seq: int | None = None
        self.inbox: deque[object] = deque()  # at most one WebSocket message's worth

    async def flush(self) -> None:
        for data in self.conn.data_to_send():
            await self.ws.send(data)

    async def next_message(self) -> object:
        while not self.inbox:
            async with asyncio.timeout(RECV_TIMEOUT_S):
                self.conn.receive_data(await self.ws.recv())
            assert self.conn.close_expected() is None, self.conn.close_expected()
            self.inbox.extend(self.conn.messages_received())
        return self.inbox.popleft()

    async def next_snapshot(self) -> Snapshot:
        while not isinstance(message := await self.next_message(), Snapshot):
            pass
        self.replica.apply(
            message.id, message.base_id, message.payload, message.compressed, message.server_tick
        )
        self.last_input_seq = message.last_input_seq
        self.conn.ack(message.id)
        await self.flush()
        return message

    def count(self, kind: int) -> int:
        return int((self.replica.store["Body.kind"] == kind).sum())


async def test_a_client_joins_sees_drones_and_its_inputs_are_applied(server: GameServer) -> None:
    conn = ClientConnection()
    async with connect(
        f"ws://127.0.0.1:{server.ws_port}", compression=None, open_timeout=RECV_TIMEOUT_S
    ) as ws:
        player = Player(ws, conn)
        conn.hello()
        conn.find_or_create("us-east", "coop")
        await player.flush()
        while not isinstance(accepted := await player.next_message(), JoinAccepted):
            pass
        me = accepted.entity
        assert isinstance(me, int)

        for _ in range(MAX_SNAPSHOTS):
            await player.next_snapshot()
            if player.count(DRONE):
                break
        store = player.replica.store
        assert player.count(DRONE) == wave_size(1)
        assert player.count(TEAM) == 1 and player.count(PLAYER) == 1
        team = np.flatnonzero(store["Body.kind"] == TEAM)[0]
        assert store["Team.wave"][team] == 1
        start = store["Body.pos"][store.rows([me])[0]].copy()

        # Play: move right, fire whenever the replicated cooldown says the weapon is ready.
        sent = []
        for _ in range(20):
            sent.append(conn.send_input(encode_input(1.0, 0.0, 0.0, fire_ready(store, me))))
            await player.flush()
            await player.next_snapshot()
        for _ in range(MAX_SNAPSHOTS):
            if player.last_input_seq == sent[-1]:
                break
            await player.next_snapshot()
        assert player.last_input_seq == sent[-1]
        assert store["Body.pos"][store.rows([me])[0]][0] > start[0]
