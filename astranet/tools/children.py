"""Child processes the tools and tests start: a free loopback port, a bounded stop, cleanup.

:class:`ChildProcess` is the base of :class:`~astranet.tools.redisproc.RedisProcess` and
:class:`~astranet.tools.serverproc.ServerProcess`: a child with its own temporary folder, used
as a context manager that stops the child and removes the folder. :func:`stop_child` is their
one way to stop: SIGTERM, wait, SIGKILL past the timeout (never an orphan left running).

Limits: loopback only. Benchmark: none (test plumbing).
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
from typing import Self

__all__ = ["ChildProcess", "free_port", "stop_child"]


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_child(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    """SIGTERM ``proc`` if it runs, wait ``timeout_s``, then SIGKILL; its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class ChildProcess:
    """A child process with a temporary folder (``_dir``); ``close`` stops it and removes it."""

    _dir: tempfile.TemporaryDirectory[str]

    def stop(self) -> object:
        raise NotImplementedError

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
