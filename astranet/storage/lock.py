"""DatabaseLock: one astranet-server per database file.

Two server processes writing checkpoints of different rooms into one SQLite file would each
restore the other's rooms after a restart, and resume tokens would be honoured by the wrong
process. SQLite itself happily lets both write, so the server holds an exclusive advisory lock
(``fcntl.flock``) on a sidecar file ``<db>.lock`` for as long as it runs; a second server on the
same file is refused at start with a message naming the first one's pid. The kernel drops the
lock when the process dies (even by SIGKILL), so a crash never leaves a stale lock behind.

Readers beside a running server (backups, tests: WAL allows them) do not take the lock.
Limits: POSIX (``fcntl``); a database on a network file system may not honour flock.
Benchmark: none (once per start).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from astranet.errors import StorageError

__all__ = ["DatabaseLock"]


class DatabaseLock:
    """Hold ``<path>.lock`` exclusively until :meth:`release` (or the process ends)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> DatabaseLock:
        """Take the lock; StorageError when another process holds it (naming its pid)."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(
                f"{self.path}: cannot create the lock file {self.lock_path}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StorageError(
                f"{self.path}: in use by another astranet-server (pid {holder}); two servers"
                " must not share one database: give each its own --db"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> DatabaseLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
