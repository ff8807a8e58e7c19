"""SQLite backend of :class:`astranet.storage.base.Storage` (stdlib ``sqlite3``, one file).

Opening: a missing (or empty) file is created and migrated. An existing file is checked
before anything is written to it: it must start with the SQLite header, pass
``PRAGMA quick_check``, carry ``PRAGMA application_id = ASTRANET_APPLICATION_ID`` and a
``schema_version`` row not newer than this code. Anything else raises
:class:`astranet.errors.StorageError` naming the file; a database is never reset.

Migrations: ``MIGRATIONS`` is an ordered list; migration ``i`` takes the schema from
version ``i`` to ``i + 1`` and runs in one transaction with the version bump, so a crash
mid-migration leaves the previous version intact.

Durability: WAL journal with ``synchronous=NORMAL``. A committed transaction is in the
WAL file before ``commit`` returns, so it survives the *process* being SIGKILLed. WAL is
only fsynced at checkpoints, so an OS crash or power loss may roll back the last
transactions (never corrupt the file). ``FULL`` would fsync every commit (~ms each) for
little gain: a checkpoint is rewritten every second anyway.

Threads: a connection belongs to the thread that opened it (sqlite3's default
``check_same_thread=True`` is kept as a guard); the server opens it on the writer thread.
Limits: ``PRAGMA quick_check`` reads the whole file on open (O(size), fine for the MB-scale
file a game server keeps). ``busy_timeout`` is BUSY_TIMEOUT_MS for a second process.
Benchmark: see ``docs/storage.md`` (checkpoint write rate, measured with the command there).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import fields
from pathlib import Path

from astranet.errors import StorageError
from astranet.storage.base import Checkpoint, PlayerRecord, RoomRecord, check_seqs, storage_errors
from astranet.storage.checkpoint import decode_checkpoint, encode_checkpoint

__all__ = ["ASTRANET_APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "SQLiteStorage"]

log = logging.getLogger(__name__)

# b"ASTR" as a big-endian int32: marks the file as ours for `file(1)` and for us.
ASTRANET_APPLICATION_ID = 0x41535452
_SQLITE_HEADER = b"SQLite format 3\x00"
# Another process (a backup tool) may hold the lock briefly; wait, but not forever.
BUSY_TIMEOUT_MS = 5_000
# Keeps a corruption report readable in a log line.
MAX_ERROR_DETAIL_CHARS = 300


def _migrate_v0_to_v1(conn: sqlite3.Connection) -> None:
    """Rooms and the players seated in them."""
    conn.execute(
        """CREATE TABLE rooms (
            room_id    TEXT PRIMARY KEY,
            region     TEXT NOT NULL,
            game_mode  TEXT NOT NULL,
            capacity   INTEGER NOT NULL CHECK (capacity > 0),
            created_at REAL NOT NULL,
            closed_at  REAL
        )"""
    )
    conn.execute(
        """CREATE TABLE players (
            player_id         TEXT PRIMARY KEY,
            room_id           TEXT NOT NULL REFERENCES rooms(room_id) ON DELETE CASCADE,
            entity_net_id     INTEGER,
            resume_token_hash BLOB NOT NULL CHECK (length(resume_token_hash) = 32),
            joined_at         REAL NOT NULL,
            left_at           REAL,
            last_input_seq    INTEGER
        )"""
    )
    conn.execute("CREATE INDEX players_by_room ON players(room_id, joined_at)")


def _migrate_v1_to_v2(conn: sqlite3.Connection) -> None:
    """One checkpoint row per room; the row is replaced, so only the latest is kept."""
    conn.execute(
        """CREATE TABLE checkpoints (
            room_id  TEXT PRIMARY KEY REFERENCES rooms(room_id) ON DELETE CASCADE,
            tick     INTEGER NOT NULL CHECK (tick >= 0),
            saved_at REAL NOT NULL,
            blob     BLOB NOT NULL
        )"""
    )


def _upsert(table: str, record: type[RoomRecord | PlayerRecord]) -> str:
    """INSERT-or-UPDATE of one ``record`` row, keyed by its first field.

    The table's columns are the record's fields in the same order (``SELECT *`` rows become
    records with ``Record(*row)``), so the statement is spelled out from the dataclass.
    """
    names = [f.name for f in fields(record)]
    updates = ", ".join(f"{name} = excluded.{name}" for name in names[1:])
    marks = ", ".join("?" * len(names))
    return f"INSERT INTO {table} VALUES ({marks}) ON CONFLICT({names[0]}) DO UPDATE SET {updates}"


def _row(record: RoomRecord | PlayerRecord) -> tuple[object, ...]:
    """The record's values in column order (shallow: no copies, unlike dataclasses.astuple)."""
    return tuple(getattr(record, f.name) for f in fields(record))


_UPSERT_ROOM = _upsert("rooms", RoomRecord)
_UPSERT_PLAYER = _upsert("players", PlayerRecord)

# Append only; never edit a released migration (files in the field ran it already).
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_v0_to_v1, _migrate_v1_to_v2]
SCHEMA_VERSION = len(MIGRATIONS)


class SQLiteStorage:
    """A :class:`~astranet.storage.base.Storage` in one SQLite file at ``path``."""

    def __init__(self, path: str | Path, *, target_version: int = SCHEMA_VERSION) -> None:
        """Open or create ``path``. ``target_version`` exists for migration tests."""
        self.path = Path(path)
        self._closed = False
        _check_file_header(self.path)
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot open database ({exc})") from exc
        try:
            with self._errors("open (database corrupted or unreadable)"):
                self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                self._check_integrity()
                version = self._check_identity()
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = NORMAL")
                self._conn.execute("PRAGMA foreign_keys = ON")
                self._migrate(version, target_version)
        except BaseException:
            self._conn.close()
            raise

    # -- opening ----------------------------------------------------------------------

    def _errors(self, doing: str) -> AbstractContextManager[None]:
        """Turn any sqlite3 error into a StorageError naming the file."""
        return storage_errors(self.path, closed=self._closed, doing=doing, errors=sqlite3.Error)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _check_integrity(self) -> None:
        rows = self._conn.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            # quick_check can list thousands of problems; the first few identify the damage.
            detail = "; ".join(str(r[0]) for r in rows[:3])[:MAX_ERROR_DETAIL_CHARS]
            raise StorageError(f"{self.path}: database is corrupted (quick_check: {detail})")

    def _check_identity(self) -> int:
        """Return the schema version of an astranet file (0 for a new, empty one)."""
        app_id = self._conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_schema")}
        if app_id == 0 and not tables:
            return 0
        if app_id != ASTRANET_APPLICATION_ID or "schema_version" not in tables:
            raise StorageError(
                f"{self.path}: not an astranet database (application_id {app_id:#x}, "
                f"expected {ASTRANET_APPLICATION_ID:#x}); refusing to modify it"
            )
        row = self._conn.execute("SELECT version FROM schema_version").fetchone()
        if row is None or not isinstance(row[0], int):
            raise StorageError(f"{self.path}: schema_version table has no valid version")
        version: int = row[0]
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{self.path}: database schema v{version} was written by a newer astranet; "
                f"this server supports up to v{SCHEMA_VERSION}"
            )
        return version

    def _migrate(self, version: int, target_version: int) -> None:
        for step in range(version, target_version):
            with self._transaction() as conn:
                if step == 0:
                    conn.execute(f"PRAGMA application_id = {ASTRANET_APPLICATION_ID}")
                    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                    conn.execute("INSERT INTO schema_version VALUES (0)")
                MIGRATIONS[step](conn)
                conn.execute("UPDATE schema_version SET version = ?", (step + 1,))
            log.info("%s: migrated schema v%d -> v%d", self.path, step, step + 1)

    def schema_version(self) -> int:
        with self._errors("read schema version"):
            return int(self._conn.execute("SELECT version FROM schema_version").fetchone()[0])

    def _update_one(self, doing: str, sql: str, params: tuple[object, ...], missing: str) -> None:
        """Run an UPDATE of one row; no row matched is a StorageError "``doing``: ``missing``"."""
        with self._errors(doing):
            cursor = self._conn.execute(sql, params)
        if cursor.rowcount == 0:
            raise StorageError(f"{self.path}: {doing}: {missing}")

    # -- rooms ------------------------------------------------------------------------

    def save_room(self, room: RoomRecord) -> None:
        with self._errors("save_room"):
            self._conn.execute(_UPSERT_ROOM, _row(room))

    def close_room(self, room_id: str, closed_at: float) -> None:
        sql = "UPDATE rooms SET closed_at = ? WHERE room_id = ?"
        self._update_one("close_room", sql, (closed_at, room_id), f"no room {room_id!r}")

    def open_rooms(self) -> list[RoomRecord]:
        with self._errors("open_rooms"):
            rows = self._conn.execute(
                "SELECT * FROM rooms WHERE closed_at IS NULL ORDER BY created_at, room_id"
            ).fetchall()
        return [RoomRecord(*row) for row in rows]

    def room(self, room_id: str) -> RoomRecord | None:
        with self._errors("room"):
            row = self._conn.execute("SELECT * FROM rooms WHERE room_id = ?", (room_id,)).fetchone()
        return None if row is None else RoomRecord(*row)

    # -- players ----------------------------------------------------------------------

    def save_player(self, player: PlayerRecord) -> None:
        with self._errors("save_player"):
            self._conn.execute(_UPSERT_PLAYER, _row(player))

    def player_left(self, player_id: str, left_at: float) -> None:
        sql = "UPDATE players SET left_at = ? WHERE player_id = ?"
        self._update_one("player_left", sql, (left_at, player_id), f"no player {player_id!r}")

    def players_in_room(self, room_id: str) -> list[PlayerRecord]:
        with self._errors("players_in_room"):
            rows = self._conn.execute(
                "SELECT * FROM players WHERE room_id = ? ORDER BY joined_at, player_id",
                (room_id,),
            ).fetchall()
        return [PlayerRecord(*row) for row in rows]

    def update_last_input_seq(self, seqs: Mapping[str, int]) -> None:
        check_seqs(seqs)
        # One transaction for the whole batch: one WAL append instead of one per player.
        with self._errors("update_last_input_seq"), self._transaction() as conn:
            conn.executemany(
                "UPDATE players SET last_input_seq = ? WHERE player_id = ?",
                [(seq, player_id) for player_id, seq in seqs.items()],
            )

    # -- checkpoints ------------------------------------------------------------------

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        blob = encode_checkpoint(checkpoint.tick, checkpoint.state)
        # One statement is one atomic transaction: readers see the old row or the new one.
        # The WHERE keeps a late, older checkpoint from replacing a newer one.
        with self._errors("save_checkpoint"):
            self._conn.execute(
                """INSERT INTO checkpoints VALUES (?, ?, ?, ?)
                   ON CONFLICT(room_id) DO UPDATE SET tick = excluded.tick,
                     saved_at = excluded.saved_at, blob = excluded.blob
                   WHERE excluded.tick >= checkpoints.tick""",
                (checkpoint.room_id, checkpoint.tick, checkpoint.saved_at, blob),
            )

    def load_checkpoint(self, room_id: str) -> Checkpoint | None:
        with self._errors("load_checkpoint"):
            row = self._conn.execute(
                "SELECT tick, saved_at, blob FROM checkpoints WHERE room_id = ?", (room_id,)
            ).fetchone()
        if row is None:
            return None
        row_tick, saved_at, blob = row
        try:
            tick, state = decode_checkpoint(blob)
        except StorageError as exc:
            raise StorageError(f"{self.path}: checkpoint of room {room_id!r}: {exc}") from exc
        if tick != row_tick:
            raise StorageError(
                f"{self.path}: checkpoint of room {room_id!r}: row tick {row_tick} != blob {tick}"
            )
        return Checkpoint(room_id=room_id, tick=tick, saved_at=saved_at, state=state)

    # -- lifecycle --------------------------------------------------------------------

    def backup(self, path: str | Path) -> None:
        """Copy the live database to ``path`` with the sqlite3 online backup API."""
        with self._errors(f"backup to {path}"):
            target = sqlite3.connect(Path(path))
            try:
                self._conn.backup(target)
            finally:
                target.close()

    def close(self) -> None:
        """Close the connection (SQLite checkpoints the WAL into the main file)."""
        if not self._closed:
            self._closed = True
            self._conn.close()


def _check_file_header(path: Path) -> None:
    """Reject a non-SQLite file before sqlite3 gets a chance to misread it."""
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return  # sqlite3 creates it
    except OSError as exc:
        raise StorageError(f"{path}: cannot read database file ({exc})") from exc
    if head and head != _SQLITE_HEADER:
        raise StorageError(f"{path}: not an SQLite database (bad file header)")
