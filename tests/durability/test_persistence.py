"""StoragePersistence.restore against databases seeded directly through astranet.storage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import esper
import numpy as np
import pytest

from astranet.ecs import NetEntity
from astranet.errors import StorageError
from astranet.examples.dots import game
from astranet.net.messages import JoinAccepted, Snapshot
from astranet.server.persistence import (
    ROOM_META_KEY,
    ROOM_META_VERSION,
    continuation,
    reserved_ticks,
)
from astranet.server.room import Room
from astranet.storage import Checkpoint, PlayerRecord, RoomRecord, SQLiteStorage, hash_resume_token
from tests.durability._wire import WireClient
from tests.durability.conftest import Durable, url

pytestmark = pytest.mark.timeout(30)

SAVED_TICK = 500
SAVED_NEXT_SNAPSHOT_ID = 40
SAVED_RESERVE = 90  # ticks the (pretend) old process reserved past its checkpoint


def room_state(room_id: str, players: int) -> tuple[dict[str, np.ndarray], list[int]]:
    """A real dots room's exported state with ``players`` avatars, plus their net ids."""
    room = Room(room_id, "us-east", "coop", game)
    try:
        net_ids = [room.add_player(f"seed{i}", bytes(32)).net_id for i in range(players)]
        state = room.store.export_state()
    finally:
        room.close()
    state[ROOM_META_KEY] = np.array(
        [ROOM_META_VERSION, SAVED_NEXT_SNAPSHOT_ID, SAVED_RESERVE], np.int64
    )
    return state, net_ids


def player(player_id: str, room_id: str, net_id: int, **extra: object) -> PlayerRecord:
    return PlayerRecord(
        player_id, room_id, net_id, hash_resume_token(player_id.encode()), time.time(), **extra
    )  # type: ignore[arg-type]


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Path]:
    """Room AAAA restorable (one live seat, one late joiner, one who left); BBBB has no
    checkpoint; CCCC is in a region the server does not serve."""
    db = tmp_path / "seeded.db"
    storage = SQLiteStorage(db)
    now = time.time()
    state, (kept, left) = room_state("AAAAAAAA", 2)
    for room_id, region in (("AAAAAAAA", "us-east"), ("BBBBBBBB", "us-east"), ("CCCCCCCC", "mars")):
        storage.save_room(RoomRecord(room_id, region, "coop", 4, now))
    storage.save_player(player("kept", "AAAAAAAA", kept, last_input_seq=77))
    storage.save_player(player("left", "AAAAAAAA", left, left_at=now))
    storage.save_player(player("late", "AAAAAAAA", 999_999))  # joined after the checkpoint
    storage.save_player(player("orphan", "BBBBBBBB", 1))
    storage.save_checkpoint(Checkpoint("AAAAAAAA", SAVED_TICK, now, state))
    storage.save_checkpoint(Checkpoint("CCCCCCCC", SAVED_TICK, now, state))
    storage.close()
    yield db


async def test_restore_rebuilds_restorable_rooms_and_drops_the_rest(
    durable: Durable, seeded: Path
) -> None:
    server = await durable.start(seeded)
    assert list(server.rooms) == ["AAAAAAAA"]
    room = server.rooms["AAAAAAAA"]
    assert list(room.players) == ["kept"]
    kept = room.players["kept"]
    assert kept.last_accepted_seq == kept.inputs.last_input_seq == 77
    assert kept.token_hash == hash_resume_token(b"kept")
    assert server.matchmaker.room("AAAAAAAA").players == 1
    summary = server.persistence.summary  # type: ignore[attr-defined]
    assert (summary.rooms, summary.players, summary.rooms_dropped, summary.players_dropped) == (
        1,
        1,
        2,
        2,
    )  # rooms BBBB and CCCC; seats of "late" and "orphan"
    # Numbering restarts above the block the old process reserved, wherever it ran.
    assert summary.first_tick == SAVED_TICK + SAVED_RESERVE + 1
    assert server.tick >= summary.first_tick
    latest = room.history.latest
    assert latest is None or latest.id > SAVED_NEXT_SNAPSHOT_ID + SAVED_RESERVE
    # esper side: the restored avatar has its NetEntity tag, as a fresh spawn would.
    with room.activated():
        tags = sorted(tag.net_id for _, tag in esper.get_component(NetEntity))
    assert tags == [kept.net_id]

    await durable.stop(server)
    storage = SQLiteStorage(seeded)
    try:
        assert [r.room_id for r in storage.open_rooms()] == ["AAAAAAAA"]
        left_at = {
            p.player_id: p.left_at
            for r in ("AAAAAAAA", "BBBBBBBB")
            for p in storage.players_in_room(r)
        }
    finally:
        storage.close()
    assert left_at["kept"] is None  # still held: it may resume after the next start too
    assert all(left_at[p] is not None for p in ("left", "late", "orphan"))


async def test_a_checkpoint_of_another_game_is_refused_naming_the_file(
    durable: Durable, tmp_path: Path
) -> None:
    db = tmp_path / "other-game.db"
    state, _ = room_state("DDDDDDDD", 0)
    state["__fingerprint__"] = state["__fingerprint__"] + 1  # another schema wrote it
    storage = SQLiteStorage(db)
    storage.save_room(RoomRecord("DDDDDDDD", "us-east", "coop", 4, time.time()))
    storage.save_checkpoint(Checkpoint("DDDDDDDD", 3, time.time(), state))
    storage.close()
    with pytest.raises(StorageError) as refused:
        await durable.start(db)
    assert str(db) in str(refused.value) and "DDDDDDDD" in str(refused.value)
    assert not any(world.endswith("DDDDDDDD") for world in esper.list_worlds())


async def test_a_checkpoint_holds_the_store_and_the_room_meta(
    durable: Durable, tmp_path: Path
) -> None:
    db = tmp_path / "checkpoint.db"
    server = await durable.start(db)
    persistence = server.persistence
    # A room the server does not tick, so no periodic checkpoint can replace ours.
    room = Room("EEEEEEEE", "us-east", "coop", game)
    try:
        room.step(0)
        room.step(1)
        tick, next_id, exported = room.tick, room.history.latest.id + 1, room.store.export_state()
        persistence.room_created(room)
        persistence.checkpoint([room], 7)  # the server tick; the room's own tick is recorded
        await persistence.writer.flush()  # type: ignore[attr-defined]
    finally:
        room.close()
    storage = SQLiteStorage(db)  # a second reader beside the live writer (WAL)
    try:
        checkpoint = storage.load_checkpoint("EEEEEEEE")
    finally:
        storage.close()
    assert checkpoint is not None and checkpoint.tick == tick
    reserve = reserved_ticks(persistence.checkpoint_interval, room.tick_hz)
    assert checkpoint.state[ROOM_META_KEY].tolist() == [ROOM_META_VERSION, next_id, reserve]
    assert set(checkpoint.state) == {*exported, ROOM_META_KEY}
    for name, array in exported.items():
        np.testing.assert_array_equal(checkpoint.state[name], array)


async def test_the_storage_writer_counters_reach_metrics(durable: Durable, tmp_path: Path) -> None:
    server = await durable.start(tmp_path / "metrics.db")
    room = Room("FFFFFFFF", "us-east", "coop", game)
    try:
        server.persistence.room_created(room)
        server.persistence.checkpoint([room], 1)
        await server.persistence.writer.flush()  # type: ignore[attr-defined]
    finally:
        room.close()
    server.report_storage()
    text = server.metrics.render().decode()
    written = [
        line
        for line in text.splitlines()
        if line.startswith('astranet_storage{stat="checkpoints_written"}')
    ]
    assert written and float(written[0].split()[-1]) >= 1
    assert 'astranet_storage{stat="writes_failed"} 0.0' in text


def _checkpoint_with_meta(meta: list[int], saved_at: float) -> Checkpoint:
    state, _ = room_state("FFFFFFFF", 1)
    state[ROOM_META_KEY] = np.array(meta, np.int64)
    return Checkpoint("FFFFFFFF", SAVED_TICK, saved_at, state)


def test_continuation_reads_no_clock_and_honours_legacy_checkpoints() -> None:
    for saved_at in (0.0, time.time(), time.time() + 10**7):  # 1970, now, a clock far ahead
        current = _checkpoint_with_meta([ROOM_META_VERSION, 40, 90], saved_at)
        assert continuation(current) == (SAVED_TICK + 91, 40 + 91)
    legacy = continuation(_checkpoint_with_meta([1, 40], 0.0))
    assert legacy[0] > SAVED_TICK and legacy[1] > 40
    with pytest.raises(StorageError, match="exhausted"):
        continuation(_checkpoint_with_meta([ROOM_META_VERSION, 2**32 - 10, 90], 0.0))


async def test_a_checkpoint_saved_long_ago_restores_a_room_that_keeps_ticking(
    durable: Durable, tmp_path: Path
) -> None:
    """Regression: saved_at decades in the past (a wrong clock, an old backup) made the
    wall-clock arithmetic jump the ids to u32's end: "snapshot id space (u32) exhausted"."""
    db = tmp_path / "old.db"
    state, [net_id] = room_state("GGGGGGGG", 1)
    state[ROOM_META_KEY] = np.array([ROOM_META_VERSION, 40, 90], np.int64)
    storage = SQLiteStorage(db)
    storage.save_room(RoomRecord("GGGGGGGG", "us-east", "coop", 4, 1.0))
    storage.save_player(player("old", "GGGGGGGG", net_id))
    storage.save_checkpoint(Checkpoint("GGGGGGGG", SAVED_TICK, 1.0, state))  # Jan 1 1970
    storage.close()

    server = await durable.start(db)
    room = server.rooms["GGGGGGGG"]
    client = WireClient(url(server))
    await client.connect()
    client.conn.hello()
    client.conn.resume("GGGGGGGG", "old", b"old")
    await client.flush()
    await client.expect(JoinAccepted)
    first = await client.expect(Snapshot)
    second = await client.expect(Snapshot)
    assert 40 + 90 < first.id < second.id < 10_000
    assert SAVED_TICK + 90 < first.server_tick < second.server_tick
    assert "GGGGGGGG" in server.rooms and room.history.next_id < 10_000
