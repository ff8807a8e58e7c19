"""Session resume (WIRE rule 7) over real sockets, with and without a server restart."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
import pytest

from astranet.examples.dots import encode_input
from astranet.net import ClientConnection
from astranet.net.messages import ErrorMessage, JoinAccepted, Snapshot
from astranet.server.session import TAKEOVER_REASON
from astranet.storage import SQLiteStorage
from tests.durability._wire import WAIT_S, WireClient
from tests.durability.conftest import Durable, url

pytestmark = pytest.mark.timeout(30)


def files_contain(folder: Path, prefix: str, secret: bytes) -> bool:
    """True if any file named ``prefix*`` (the database, its -wal and -shm) holds ``secret``."""
    files = [p for p in folder.iterdir() if p.name.startswith(prefix)]
    assert files
    return any(secret in p.read_bytes() for p in files)


async def play(client: WireClient, count: int = 4) -> Snapshot:
    """Send ``count`` inputs and return the first snapshot that shows them all applied."""
    seq = await client.send_inputs(encode_input(0.5, -0.5), count)
    return await client.snapshot_where(lambda s: s.last_input_seq == seq)


async def test_resume_after_a_drop_keeps_seat_avatar_and_seq(
    durable: Durable, tmp_path: Path
) -> None:
    server = await durable.start(tmp_path / "a.db")
    client = WireClient(url(server))
    joined = await client.join()
    applied = await play(client)
    await client.drop()

    await client.resume()
    again = await client.expect(JoinAccepted)
    assert (again.room_id, again.player_id, again.entity) == (
        joined.room_id,
        joined.player_id,
        joined.entity,
    )
    assert again.session_key != joined.session_key
    assert again.resume_token != joined.resume_token  # rotated on every resume (A4)
    full = await client.expect(Snapshot)
    assert full.base_id is None
    assert full.id > applied.id and full.server_tick >= applied.server_tick
    assert full.last_input_seq == applied.last_input_seq
    resumed = await play(client, 2)  # the client's seq simply continues
    assert resumed.last_input_seq == applied.last_input_seq + 2


async def ticks_pass(witness: WireClient, ticks: int) -> int:
    """Wait for ``ticks`` snapshots of the witness's (attended) room; returns the last tick."""
    first = await witness.expect(Snapshot)
    last = await witness.snapshot_where(lambda s: s.server_tick >= first.server_tick + ticks)
    return last.server_tick


async def test_a_room_nobody_is_connected_to_is_frozen_until_a_resume(
    durable: Durable, tmp_path: Path
) -> None:
    server = await durable.start(tmp_path / "a.db")
    client = WireClient(url(server))
    joined = await client.join()
    witness = WireClient(url(server))  # another game mode, so another room: a clock to watch
    await witness.join(game_mode="witness")
    applied = await play(client)
    room = server.rooms[joined.room_id]
    await client.drop()
    await ticks_pass(witness, 30)  # 1 s: the server has long seen the drop
    assert not room.attended()
    frozen_tick, frozen_id = room.tick, room.history.next_id
    frozen_state = room.store.export_state()
    assert await ticks_pass(witness, 10) > frozen_tick + 10
    assert (room.tick, room.history.next_id) == (frozen_tick, frozen_id)  # not stepped
    assert all(np.array_equal(frozen_state[k], v) for k, v in room.store.export_state().items())

    await client.resume()
    await client.expect(JoinAccepted)
    full = await client.expect(Snapshot)
    assert full.base_id is None and full.id >= frozen_id and full.server_tick > frozen_tick
    resumed = await play(client, 2)
    assert resumed.last_input_seq == applied.last_input_seq + 2


async def test_an_old_seq_after_resume_is_a_replay(durable: Durable, tmp_path: Path) -> None:
    server = await durable.start(tmp_path / "a.db")
    client = WireClient(url(server))
    await client.join()
    await play(client)
    await client.drop()
    await client.resume()
    await client.expect(JoinAccepted)
    client.conn.next_seq = 1  # a frame the previous session already had applied
    await client.send_inputs(encode_input(1.0, 0.0), 1)
    assert await client.closed() == (1008, "input frame replayed")


async def test_a_wrong_token_is_denied(durable: Durable, tmp_path: Path) -> None:
    server = await durable.start(tmp_path / "a.db")
    owner = WireClient(url(server))
    joined = await owner.join()
    thief = WireClient(url(server))
    await thief.connect()
    thief.conn.hello()
    thief.conn.resume(joined.room_id, joined.player_id, bytes(len(joined.resume_token)))
    await thief.flush()
    error = await thief.expect(ErrorMessage)
    assert error.code == "resume_denied"
    await owner.snapshot_where(lambda s: True)  # the owner is untouched


async def test_a_second_connection_takes_over_and_the_first_is_closed_1008(
    durable: Durable, tmp_path: Path
) -> None:
    server = await durable.start(tmp_path / "a.db")
    first = WireClient(url(server))
    joined = await first.join()
    second = WireClient(url(server), ClientConnection(first_seq=100))
    await second.connect()
    second.conn.hello()
    second.conn.resume(joined.room_id, joined.player_id, joined.resume_token)
    await second.flush()
    taken = await second.expect(JoinAccepted)
    assert (taken.player_id, taken.entity) == (joined.player_id, joined.entity)
    assert await first.closed() == (1008, TAKEOVER_REASON)
    assert (await play(second, 1)).last_input_seq == 100  # the seat is the new socket's


async def test_graceful_restart_restores_the_room_and_numbering(
    durable: Durable, tmp_path: Path
) -> None:
    db = tmp_path / "restart.db"
    first = await durable.start(db)
    client = WireClient(url(first))
    joined = await client.join()
    applied = await play(client)
    last_seen = await client.snapshot_where(lambda s: s.server_tick > applied.server_tick)
    await durable.stop(first)

    second = await durable.start(db)
    assert list(second.rooms) == [joined.room_id]
    assert second.matchmaker.room(joined.room_id).players == 1  # the seat is held
    client.url = url(second)
    await client.resume()
    again = await client.expect(JoinAccepted)
    assert (again.player_id, again.entity) == (joined.player_id, joined.entity)
    full = await client.expect(Snapshot)
    assert full.base_id is None and full.id > last_seen.id
    assert full.server_tick > last_seen.server_tick
    assert full.last_input_seq == applied.last_input_seq


async def test_resume_tokens_are_never_written_to_disk(durable: Durable, tmp_path: Path) -> None:
    db = tmp_path / "secret.db"
    server = await durable.start(db)
    joined = await WireClient(url(server)).join()
    await durable.stop(server)
    assert not files_contain(tmp_path, "secret.db", joined.resume_token)
    storage = SQLiteStorage(db)
    try:
        (record,) = storage.players_in_room(joined.room_id)
    finally:
        storage.close()
    assert record.resume_token_hash != joined.resume_token


class LogEvent(logging.Handler):
    """Sets an asyncio event when a log message containing ``text`` is emitted."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()  # the server logs on the loop thread


async def test_a_seat_not_resumed_within_the_window_is_freed_and_recorded(
    durable: Durable, tmp_path: Path
) -> None:
    db = tmp_path / "window.db"
    server = await durable.start(db, "--resume-window", "0.2")
    client = WireClient(url(server))
    joined = await client.join()
    expired = LogEvent(f"player {joined.player_id} did not resume in time")
    server_log = logging.getLogger("astranet.server")
    level = server_log.level
    server_log.setLevel(logging.INFO)  # the expiry is logged at info
    server_log.addHandler(expired)
    try:
        await client.drop()
        async with asyncio.timeout(WAIT_S):  # housekeeping runs once a second
            await expired.seen.wait()
    finally:
        server_log.removeHandler(expired)
        server_log.setLevel(level)
    await client.resume()
    assert (await client.expect(ErrorMessage)).code == "resume_denied"
    assert joined.player_id not in server.rooms[joined.room_id].players
    await server.persistence.writer.flush()  # type: ignore[attr-defined]
    storage = SQLiteStorage(db)
    try:
        (record,) = storage.players_in_room(joined.room_id)
    finally:
        storage.close()
    assert record.left_at is not None
