"""kill -9 and come back: a real server process, SIGKILLed mid-game, restarted on the same file.

The resumed player must get their seat, avatar and input seq back, and the world they see must
be exactly the last checkpoint on disk (read straight from the file with astranet.storage),
advanced by the ticks the new process has simulated since restoring -- nothing older, nothing
corrupted.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from astranet.examples.dots import encode_input, game
from astranet.net.messages import JoinAccepted, Snapshot
from astranet.replication import Replica
from astranet.server.persistence import ROOM_META_KEY
from astranet.server.room import Room
from astranet.storage import Checkpoint, PlayerRecord, SQLiteStorage
from tests.durability._wire import RESTORED, WireClient, start_server

TICK_HZ = 30
CHECKPOINT_INTERVAL_S = 0.2
INPUTS = 12


def read_back(db: Path, room_id: str) -> tuple[Checkpoint, list[PlayerRecord]]:
    storage = SQLiteStorage(db)  # runs quick_check: the killed server left a sound file
    try:
        checkpoint = storage.load_checkpoint(room_id)
        players = storage.players_in_room(room_id)
    finally:
        storage.close()
    assert checkpoint is not None
    return checkpoint, players


def avatar_pos(net_ids: np.ndarray, pos: np.ndarray, net_id: int) -> np.ndarray:
    return pos[int(np.searchsorted(net_ids, net_id))]


def simulate_from(checkpoint: Checkpoint, first_tick: int, last_tick: int) -> Room:
    """The checkpoint restored in-process and stepped over the same ticks as the new server."""
    room = Room(checkpoint.room_id, "us-east", "coop", game, tick_hz=TICK_HZ)
    room.store.import_state(dict(checkpoint.state))
    for tick in range(first_tick, last_tick + 1):
        room.step(tick)
    return room


@pytest.mark.timeout(60)
async def test_sigkill_then_resume_restores_the_last_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    flags = ("--checkpoint-interval", str(CHECKPOINT_INTERVAL_S), "--tick-hz", str(TICK_HZ))
    first = start_server(db, *flags)
    try:
        player = WireClient(first.url)
        joined = await player.join()
        last_seq = await player.send_inputs(encode_input(1.0, 0.5), INPUTS)
        applied = await player.snapshot_where(lambda s: s.last_input_seq == last_seq)
        # Two checkpoint intervals of further snapshots: a checkpoint after the last input.
        settled = applied.server_tick + 2 * round(CHECKPOINT_INTERVAL_S * TICK_HZ) + 1
        before_crash = await player.snapshot_where(lambda s: s.server_tick >= settled)
        first.kill()
        assert first.wait() == -signal.SIGKILL
    finally:
        first.close()

    checkpoint, players = read_back(db, joined.room_id)
    assert checkpoint.tick >= applied.server_tick  # taken after the last input was applied
    (record,) = players
    assert (record.player_id, record.entity_net_id) == (joined.player_id, joined.entity)
    assert record.left_at is None and record.last_input_seq == last_seq
    # The avatar stood still since its last input: the checkpoint holds its final position,
    # the one the client saw just before the crash (snapshots are full: this client never acks).
    assert before_crash.base_id is None
    seen = Replica(game.schema)
    seen.apply(
        before_crash.id,
        None,
        before_crash.payload,
        before_crash.compressed,
        before_crash.server_tick,
    )
    saved_pos = avatar_pos(
        checkpoint.state["__net_ids__"], checkpoint.state["Body.pos"], joined.entity
    )
    np.testing.assert_array_equal(
        avatar_pos(seen.store.net_ids, seen.store["Body.pos"], joined.entity), saved_pos
    )

    second = start_server(db, *flags)
    try:
        first_tick = int(second.wait_for_log(RESTORED)[1])
        assert first_tick > before_crash.server_tick  # server_tick never decreases (rule 4)
        player.url = second.url  # same player object: identity and seq carry over
        await player.resume()
        again = await player.expect(JoinAccepted)
        assert (again.room_id, again.player_id, again.entity) == (
            joined.room_id,
            joined.player_id,
            joined.entity,
        )
        assert again.session_key != joined.session_key
        full = await player.expect(Snapshot)
        assert full.base_id is None  # the next snapshot after Resume is full (rule 7)
        assert full.id > before_crash.id  # ids continue above the old process's
        assert full.last_input_seq == last_seq  # the seq continues from the database

        received = (
            Replica(game.schema)
            .apply(full.id, None, full.payload, full.compressed, full.server_tick)
            .snapshot
        )
        # Nobody was connected between the restore and the Resume, so the room stayed frozen
        # (WIRE A4): the first snapshot is the checkpoint stepped once, at its own tick.
        expected = simulate_from(checkpoint, full.server_tick, full.server_tick).history.latest
        assert expected is not None
        np.testing.assert_array_equal(received.net_ids, expected.net_ids)
        for got, want in zip(received.codes, expected.codes, strict=True):
            np.testing.assert_array_equal(got, want)
        # The avatar is exactly where the checkpoint left it (no input since).
        replica = Replica(game.schema)
        replica.apply(full.id, None, full.payload, full.compressed, full.server_tick)
        np.testing.assert_array_equal(
            avatar_pos(replica.store.net_ids, replica.store["Body.pos"], joined.entity), saved_pos
        )

        # Inputs continue with the client's seq and are applied.
        seq = await player.send_inputs(encode_input(0.0, 1.0), 1)
        assert seq == last_seq + 1
        moved = await player.snapshot_where(lambda s: s.last_input_seq == seq)
        assert moved.server_tick > full.server_tick
        second.terminate()
        assert second.wait() == 0
    finally:
        second.close()
    assert ROOM_META_KEY in read_back(db, joined.room_id)[0].state
