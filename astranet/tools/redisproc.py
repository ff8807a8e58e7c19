"""A throwaway ``redis-server`` on a free loopback port, for tests and benchmarks.

:class:`RedisProcess` starts ``redis-server`` with no persistence (``--save ''``,
``--appendonly no``: a restart loses everything, which is what the Redis-restart tests want),
waits until it answers ``PING`` and can be stopped (``stop``), killed (``kill``) and started
again on the same port (``start``). ``REDIS_SERVER`` (env ``ASTRANET_REDIS_SERVER``) names the
binary; :func:`redis_server_binary` returns None when it is not installed.

Limits: loopback only; ``STARTUP_TIMEOUT_S``. Benchmark: none (test plumbing).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from astranet.errors import AstranetError
from astranet.tools.children import ChildProcess, free_port, stop_child

__all__ = ["RedisProcess", "RedisStartError", "free_port", "redis_server_binary"]

STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class RedisStartError(AstranetError):
    """redis-server exited or never answered PING."""


def redis_server_binary() -> str | None:
    return os.environ.get("ASTRANET_REDIS_SERVER") or shutil.which("redis-server")


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisProcess(ChildProcess):
    """One ``redis-server`` child on 127.0.0.1 (a context manager). ``url`` is its address."""

    def __init__(self, port: int | None = None) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RedisStartError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="astranet-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again) on ``port``; returns once it answers PING."""
        log = (Path(self._dir.name) / "redis.log").open("ab")
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "save": "",
            "appendonly": "no",
            "dir": self._dir.name,
        }
        args = [self.binary]
        for name, value in options.items():
            args += [f"--{name}", value]
        self.proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if _ping(self.port):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)  # another process: nothing to await but its socket
        self.kill()
        raise RedisStartError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL past STOP_TIMEOUT_S)."""
        if self.proc is not None:
            stop_child(self.proc, STOP_TIMEOUT_S)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
