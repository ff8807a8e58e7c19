"""Graceful shutdown (WIRE rule 8) and database refusal, on a real ``astranet.server`` process."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from astranet.examples.dots import encode_input, game
from astranet.replication import Replica
from astranet.storage import SQLiteStorage
from tests.durability._wire import WireClient, start_server

SHUTDOWN_LIMIT_S = 10.0  # rule 8 / issue: exit 0 within 10 s


@pytest.mark.timeout(60)
async def test_sigterm_closes_1001_checkpoints_and_exits_0(tmp_path: Path) -> None:
    db = tmp_path / "graceful.db"
    # No periodic checkpoint within the test (the config refuses 0), so the one on disk can
    # only be the shutdown's.
    server = start_server(db, "--checkpoint-interval", "3600")
    try:
        players = [WireClient(server.url) for _ in range(2)]
        joined = [await p.join() for p in players]
        seq = await players[0].send_inputs(encode_input(-1.0, 0.0), 5)
        applied = await players[0].snapshot_where(lambda s: s.last_input_seq == seq)
        started = time.monotonic()
        server.terminate()
        closes = await asyncio.gather(*(p.closed() for p in players))
        assert server.wait(SHUTDOWN_LIMIT_S) == 0
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert [code for code, _ in closes] == [1001, 1001]
    assert elapsed < SHUTDOWN_LIMIT_S

    storage = SQLiteStorage(db)
    try:
        checkpoint = storage.load_checkpoint(joined[0].room_id)
        records = {r.player_id: r for r in storage.players_in_room(joined[0].room_id)}
        (room,) = storage.open_rooms()  # shutdown keeps rooms open: they restore next start
    finally:
        storage.close()
    assert room.room_id == joined[0].room_id == joined[1].room_id
    assert checkpoint is not None and checkpoint.tick >= applied.server_tick
    assert records[joined[0].player_id].last_input_seq == seq
    assert records[joined[1].player_id].last_input_seq is None  # never sent an input
    # The avatar stands where the last snapshot showed it after the final input.
    seen = Replica(game.schema)
    seen.apply(applied.id, None, applied.payload, applied.compressed, applied.server_tick)
    ids, pos = checkpoint.state["__net_ids__"], checkpoint.state["Body.pos"]
    row = int(np.searchsorted(ids, joined[0].entity))
    seen_row = int(np.searchsorted(seen.store.net_ids, joined[0].entity))
    np.testing.assert_array_equal(pos[row], seen.store["Body.pos"][seen_row])


def run_server_cli(db: Path) -> tuple[int, str]:
    """Run the real CLI against ``db``; it must refuse before binding (ports 0 anyway)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "astranet.server",
            "--game",
            "astranet.examples.dots:game",
            "--ws-port",
            "0",
            "--http-port",
            "0",
            "--db",
            str(db),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.returncode, done.stderr


@pytest.mark.timeout(60)
def test_corrupt_or_foreign_database_is_refused_with_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all" * 100)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    for db, reason in ((garbage, "not an SQLite database"), (foreign, "not an astranet database")):
        before = db.read_bytes()
        code, stderr = run_server_cli(db)
        assert code == 2
        lines = [line for line in stderr.splitlines() if "error" in line.lower()]
        assert len(lines) == 1, stderr
        assert str(db) in lines[0] and reason in lines[0]
        assert "Traceback" not in stderr
        assert db.read_bytes() == before  # never reset or "repaired"
