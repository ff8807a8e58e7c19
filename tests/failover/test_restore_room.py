"""restore_room: one room restored on a server that is already running (the failover path).

The room's ticks and ids continue above its checkpoint's reserved block (WIRE rule 4 for the
resuming client) through a per-room tick offset, while the server's other rooms keep theirs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from astranet.examples.dots import game
from astranet.net.messages import JoinAccepted, Snapshot
from astranet.server.persistence import ROOM_META_KEY, ROOM_META_VERSION
from astranet.server.room import Room
from astranet.storage import Checkpoint, PlayerRecord, RoomRecord, SQLiteStorage
from astranet.storage import hash_resume_token as token_hash
from tests.durability._wire import WireClient
from tests.durability.conftest import Durable, url

pytestmark = pytest.mark.timeout(60)

SAVED_TICK = 1_000_000  # far above the running server's own ticks
RESERVE = 90


@pytest.fixture
async def durable() -> AsyncIterator[Durable]:
    servers = Durable()
    yield servers
    for server in list(servers.running):
        await servers.stop(server)


def _seed(db: Path, room_id: str) -> int:
    room = Room(room_id, "us-east", "coop", game)
    try:
        net_id = room.add_player("mover", bytes(32)).net_id
        state = room.store.export_state()
    finally:
        room.close()
    state[ROOM_META_KEY] = np.array([ROOM_META_VERSION, 500, RESERVE], np.int64)
    storage = SQLiteStorage(db)  # a second connection beside the running server (WAL)
    try:
        storage.save_room(RoomRecord(room_id, "us-east", "coop", 4, 1.0))
        storage.save_player(PlayerRecord("mover", room_id, net_id, token_hash(b"tok"), 1.0))
        storage.save_checkpoint(Checkpoint(room_id, SAVED_TICK, 0.0, state))
    finally:
        storage.close()
    return net_id


async def test_a_room_restored_on_a_running_server_numbers_above_its_block(
    durable: Durable, tmp_path: Path
) -> None:
    db = tmp_path / "live.db"
    server = await durable.start(db)
    local = WireClient(url(server))
    await local.join()  # a room of this server, numbering from its own tick
    before = await local.expect(Snapshot)
    net_id = _seed(db, "MovedRm1")

    room = await server.persistence.restore_room(server, "MovedRm1")  # type: ignore[attr-defined]
    assert room is not None and server.rooms["MovedRm1"] is room
    assert room.tick_offset > 0
    assert await server.persistence.restore_room(server, "Nope0000") is None  # type: ignore[attr-defined]

    mover = WireClient(url(server))
    await mover.connect()
    mover.conn.hello()
    mover.conn.resume("MovedRm1", "mover", b"tok")
    await mover.flush()
    accepted = await mover.expect(JoinAccepted)
    assert accepted.entity == net_id
    first = await mover.expect(Snapshot)
    assert first.base_id is None and first.id > 500 + RESERVE
    assert first.server_tick > SAVED_TICK + RESERVE
    # The server's own room keeps its numbering (no jump for its players).
    after = await local.expect(Snapshot)
    assert before.server_tick < after.server_tick < SAVED_TICK
