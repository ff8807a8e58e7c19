"""The Storage contract, run on every backend (tests/storage/conftest.py: SQLite, real Redis).

What any backend must do for the server: upserts, oldest-first open rooms, batched seqs that
ignore unknown players, dangling references refused, the latest checkpoint kept and never
replaced by an older tick, reopen keeps everything, a backup the SQLite backend can open.
Backend-specific checks (files, migrations, fencing) live in test_sqlite.py / test_redis.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from astranet.errors import StorageError
from astranet.storage.base import (
    Checkpoint,
    PlayerRecord,
    Storage,
    hash_resume_token,
    token_matches,
)
from astranet.storage.sqlite import SQLiteStorage
from tests.storage._records import player_record as _player
from tests.storage._records import room_record as _room
from tests.storage._records import state_at as _state

pytestmark = pytest.mark.timeout(30)


def test_the_backend_satisfies_the_protocol(store: Storage) -> None:
    assert isinstance(store, Storage)


def test_reopen_keeps_rooms_players_and_checkpoints(backend: Callable[[], Storage]) -> None:
    storage = backend()
    storage.save_room(_room())
    storage.save_player(_player())
    storage.update_last_input_seq({"p1": 42})
    storage.save_checkpoint(Checkpoint("Room0001", 300, 10.25, _state(300)))
    storage.close()

    storage = backend()
    assert storage.open_rooms() == [_room()]
    [player] = storage.players_in_room("Room0001")
    assert player.last_input_seq == 42 and player.entity_net_id == 17
    assert player == PlayerRecord(
        "p1", "Room0001", 17, hash_resume_token(b"t" * 32), 101.0, None, 42
    )
    checkpoint = storage.load_checkpoint("Room0001")
    assert checkpoint is not None and checkpoint.tick == 300 and checkpoint.saved_at == 10.25
    np.testing.assert_array_equal(checkpoint.state["rows"], _state(300)["rows"])
    np.testing.assert_array_equal(checkpoint.state["hp"], _state(300)["hp"])


def test_rooms_close_and_players_leave(store: Storage) -> None:
    store.save_room(_room("Room0001", created_at=2.0))
    store.save_room(_room("Room0002", created_at=1.0))
    store.save_player(_player("p1"))
    store.save_player(_player("p2"))
    assert [r.room_id for r in store.open_rooms()] == ["Room0002", "Room0001"]  # oldest first
    store.close_room("Room0002", 5.0)
    assert [r.room_id for r in store.open_rooms()] == ["Room0001"]
    store.player_left("p2", 7.0)
    left = {p.player_id: p.left_at for p in store.players_in_room("Room0001")}
    assert left == {"p1": None, "p2": 7.0}


def test_a_room_is_found_by_id_open_or_closed(store: Storage) -> None:
    assert store.room("Room0001") is None
    store.save_room(_room())
    assert store.room("Room0001") == _room()
    store.close_room("Room0001", 5.0)
    closed = store.room("Room0001")
    assert closed is not None and closed.closed_at == 5.0


def test_save_player_is_an_upsert(store: Storage) -> None:
    store.save_room(_room())
    store.save_player(_player())
    moved = PlayerRecord("p1", "Room0001", 99, hash_resume_token(b"new"), 101.0)
    store.save_player(moved)
    assert store.players_in_room("Room0001") == [moved]


def test_a_player_saved_into_another_room_moves(store: Storage) -> None:
    store.save_room(_room("Room0001"))
    store.save_room(_room("Room0002"))
    store.save_player(_player("p1", "Room0001"))
    store.save_player(_player("p1", "Room0002"))
    assert store.players_in_room("Room0001") == []
    assert [p.player_id for p in store.players_in_room("Room0002")] == ["p1"]


def test_batched_last_input_seq_updates_many_and_ignores_unknown(store: Storage) -> None:
    store.save_room(_room())
    for pid in ("a", "b", "c"):
        store.save_player(_player(pid))
    store.update_last_input_seq({"a": 1, "b": 2**32 - 1, "ghost": 5})
    seqs = {p.player_id: p.last_input_seq for p in store.players_in_room("Room0001")}
    assert seqs == {"a": 1, "b": 2**32 - 1, "c": None}
    with pytest.raises(StorageError, match="u32"):
        store.update_last_input_seq({"a": 2**32})


def test_unknown_ids_and_dangling_references_are_storage_errors(store: Storage) -> None:
    with pytest.raises(StorageError, match="no room"):
        store.close_room("Nope0000", 1.0)
    with pytest.raises(StorageError, match="no player"):
        store.player_left("ghost", 1.0)
    with pytest.raises(StorageError, match="FOREIGN KEY"):
        store.save_player(_player(room_id="Nope0000"))
    with pytest.raises(StorageError, match="FOREIGN KEY"):
        store.save_checkpoint(Checkpoint("Nope0000", 1, 1.0, {}))


def test_latest_checkpoint_wins_and_older_ticks_do_not_regress(store: Storage) -> None:
    store.save_room(_room())
    assert store.load_checkpoint("Room0001") is None
    for tick in (10, 20, 30):
        store.save_checkpoint(Checkpoint("Room0001", tick, float(tick), _state(tick)))
    store.save_checkpoint(Checkpoint("Room0001", 25, 99.0, _state(25)))  # late and stale
    checkpoint = store.load_checkpoint("Room0001")
    assert checkpoint is not None and checkpoint.tick == 30 and checkpoint.saved_at == 30.0
    assert int(checkpoint.state["rows"]["x"][0]) == 30


def test_stored_token_hash_verifies_the_token(store: Storage) -> None:
    token = b"\x01" * 32
    store.save_room(_room())
    store.save_player(_player(token=token))
    [player] = store.players_in_room("Room0001")
    assert token_matches(player.resume_token_hash, token)
    assert not token_matches(player.resume_token_hash, b"\x02" * 32)


def test_backup_produces_a_valid_sqlite_database(store: Storage, tmp_path: Path) -> None:
    store.save_room(_room())
    store.save_player(_player())
    store.save_checkpoint(Checkpoint("Room0001", 9, 1.0, _state(9)))
    target = tmp_path / "backup.db"
    store.backup(target)
    store.save_room(_room("Room0002"))  # the live store keeps working after a backup
    copy = SQLiteStorage(target)
    try:
        assert [r.room_id for r in copy.open_rooms()] == ["Room0001"]
        assert len(copy.players_in_room("Room0001")) == 1
        checkpoint = copy.load_checkpoint("Room0001")
        assert checkpoint is not None and checkpoint.tick == 9
    finally:
        copy.close()


def test_calls_after_close_are_storage_errors(backend: Callable[[], Storage]) -> None:
    storage = backend()
    storage.close()
    storage.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        storage.open_rooms()
