"""Test helpers for durability: a real WebSocket client and a real server subprocess.

``WireClient`` drives the sans-I/O :class:`astranet.net.ClientConnection` over a real
``websockets`` socket (as any client must: signed inputs, continuing seqs across Resume).
``ServerProcess`` runs ``python -m astranet.server`` on 127.0.0.1 with ports 0 and collects its
stderr log lines, so tests wait on log lines ("listening ws=... http=...") instead of sleeping.
Every wait is bounded by WAIT_S.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path
from typing import TypeVar

from websockets.asyncio.client import ClientConnection as WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from astranet.net import ClientConnection
from astranet.net.messages import ErrorMessage, JoinAccepted, Message, Snapshot

# Generous for a loaded 2-core machine; only bounds a test that would otherwise hang.
WAIT_S = 10.0
LISTENING = re.compile(r"listening ws=(\d+) http=(\d+)")
RESTORED = re.compile(r"ticks continue from (\d+)")
# Log lines kept per server process (far more than a test produces).
MAX_LOG_LINES = 10_000

M = TypeVar("M", bound=Message)


class WireClient:
    """One player: a ClientConnection plus its current socket (replaced on resume)."""

    def __init__(self, url: str, conn: ClientConnection | None = None) -> None:
        self.url = url
        self.conn = conn if conn is not None else ClientConnection()
        self.ws: WebSocket | None = None
        self.snapshots: list[Snapshot] = []

    async def connect(self) -> None:
        self.ws = await connect(self.url, compression=None, open_timeout=WAIT_S, max_size=None)

    async def flush(self) -> None:
        assert self.ws is not None
        for data in self.conn.data_to_send():
            await self.ws.send(data)

    async def expect(self, kind: type[M], limit_s: float = WAIT_S) -> M:
        """The next message of ``kind``; Snapshots met on the way are kept, others fail."""
        assert self.ws is not None
        async with asyncio.timeout(limit_s):
            while True:
                self.conn.receive_data(await self.ws.recv())
                for message in self.conn.messages_received():
                    if isinstance(message, Snapshot):
                        self.snapshots.append(message)
                    if isinstance(message, kind):
                        return message
                    if isinstance(message, ErrorMessage):
                        raise AssertionError(f"server error: {message!r}")

    async def join(self, region: str = "us-east", game_mode: str = "coop") -> JoinAccepted:
        await self.connect()
        self.conn.hello()
        self.conn.find_or_create(region, game_mode)
        await self.flush()
        return await self.expect(JoinAccepted)

    async def resume(self, **identity: object) -> None:
        """Reconnect on a new socket and send Hello + Resume (the reply is the caller's)."""
        self.conn.reset_transport()
        await self.connect()
        self.conn.hello()
        self.conn.resume(**identity)  # type: ignore[arg-type]
        await self.flush()

    async def send_inputs(self, blob: bytes, count: int) -> int:
        """Send ``count`` signed frames; returns the last seq."""
        seq = 0
        for _ in range(count):
            seq = self.conn.send_input(blob)
        await self.flush()
        return seq

    async def snapshot_where(self, predicate: object, limit_s: float = WAIT_S) -> Snapshot:
        async with asyncio.timeout(limit_s):
            while True:
                snapshot = await self.expect(Snapshot, limit_s)
                if predicate(snapshot):  # type: ignore[operator]
                    return snapshot

    async def closed(self, limit_s: float = WAIT_S) -> tuple[int | None, str | None]:
        """Read until the server closes; returns (code, reason)."""
        assert self.ws is not None
        async with asyncio.timeout(limit_s):
            try:
                while True:
                    self.conn.receive_data(await self.ws.recv())
                    self.conn.messages_received()
            except ConnectionClosed:
                pass
        return self.ws.close_code, self.ws.close_reason

    async def drop(self) -> None:
        """Abrupt disconnect: the TCP connection goes away without a closing handshake."""
        assert self.ws is not None
        self.ws.transport.abort()
        await self.ws.wait_closed()


class ServerProcess:
    """``python -m astranet.server`` as a child process, its stderr collected line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._eof = False
        self._reader = asyncio.create_task(self._read_log())
        self.ws_port = 0
        self.http_port = 0

    @classmethod
    async def start(cls, db: Path, *flags: str, cwd: Path | None = None) -> ServerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "astranet.server",
            "--game",
            "astranet.examples.dots:game",
            "--host",
            "127.0.0.1",
            "--ws-port",
            "0",
            "--http-port",
            "0",
            "--db",
            str(db),
            *flags,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
        )
        server = cls(process)
        match = await server.wait_for_log(LISTENING)
        server.ws_port, server.http_port = int(match[1]), int(match[2])
        return server

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    async def _read_log(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            async with self._changed:
                if len(self.lines) < MAX_LOG_LINES:
                    self.lines.append(raw.decode(errors="replace").rstrip())
                self._changed.notify_all()
        async with self._changed:
            self._eof = True
            self._changed.notify_all()

    async def wait_for_log(
        self, pattern: re.Pattern[str], limit_s: float = WAIT_S
    ) -> re.Match[str]:
        """The first log line matching ``pattern`` (fails if the process exits first)."""
        async with asyncio.timeout(limit_s), self._changed:
            while True:
                for line in self.lines:
                    match = pattern.search(line)
                    if match:
                        return match
                if self._eof:
                    raise AssertionError("server exited:\n" + "\n".join(self.lines))
                await self._changed.wait()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    async def wait(self, limit_s: float = WAIT_S) -> int:
        async with asyncio.timeout(limit_s):
            code = await self.process.wait()
            await self._reader
        return code

    async def stop(self) -> None:
        """Cleanup for a finally: make sure the child is gone."""
        if self.process.returncode is None:
            self.process.kill()
        await self.wait()
