"""A real ``redis-server`` for tests: started on a free 127.0.0.1 port, killed afterwards.

``RedisServer.start()`` launches ``/usr/bin/redis-server`` (or ``$REDIS_SERVER``) with no
persistence and waits for its "Ready to accept connections" line (no polling sleeps); the
port is picked by binding port 0 first and is retried if another process takes it meanwhile.
Shared by tests/storage, tests/failover and tests/cluster (use the ``redis_server`` fixtures
there; ``skip_without_redis`` marks a module when the binary is missing).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass, field

import pytest

__all__ = ["REDIS_SERVER", "RedisServer", "skip_without_redis"]

REDIS_SERVER = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or ""
# Bounds a start that would otherwise hang (redis starts in milliseconds).
START_TIMEOUT_S = 10.0
PORT_ATTEMPTS = 5

skip_without_redis = pytest.mark.skipif(
    not REDIS_SERVER, reason="redis-server not installed (apt-get install redis-server)"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """One redis-server process; ``url`` is ``redis://127.0.0.1:PORT/0``."""

    port: int
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, port: int | None = None) -> RedisServer:
        last = ""
        for _ in range(PORT_ATTEMPTS if port is None else 1):
            chosen = port if port is not None else _free_port()
            server = cls._launch(chosen)
            if server is not None:
                return server
            last = f"port {chosen}"
        raise RuntimeError(f"redis-server did not start ({last})")

    @classmethod
    def _launch(cls, port: int) -> RedisServer | None:
        process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        server = cls(port, process)
        ready = threading.Event()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                server.log.append(line)
                if "Ready to accept connections" in line:
                    ready.set()
            ready.set()  # exited: wake the waiter, which checks poll()

        threading.Thread(target=read, daemon=True).start()
        if ready.wait(START_TIMEOUT_S) and process.poll() is None:
            return server
        server.stop()
        return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(START_TIMEOUT_S)

    def restart(self) -> None:
        """Kill and start again on the same port (data is gone: no persistence)."""
        self.stop()
        again = RedisServer.start(self.port)
        self.process, self.log = again.process, again.log
