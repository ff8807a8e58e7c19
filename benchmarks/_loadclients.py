"""Load-client worker for benchmarks/server_load.py: many protocol clients in one process.

A worker process runs one asyncio loop with ``groups * 4`` clients. Each group fills one room:
its first client sends ``FindOrCreate(party_size=4)`` and the other three ``JoinRoom`` the
returned room id, so R groups give exactly R rooms of 4. Every client is a real
:class:`~astranet.net.ClientConnection` (signed inputs, acks) over
``websockets.asyncio.client``.

Timing: one task per worker sends every client's input at 30 Hz on an absolute schedule (no
task-with-sleep per client). Clients are spread over ``PHASE_SLOTS`` phases of the period, as
real clients' send times are spread relative to the server tick; the task wakes once per slot.
Each client also has a reader task (one ``recv`` loop per socket is unavoidable) that acks
every snapshot and records:

* snapshot bytes (whole WebSocket message, and the payload alone),
* input -> snapshot latency: from sending seq ``s`` to receiving the first snapshot whose
  ``last_input_seq >= s`` (``time.monotonic``, which is system-wide on Linux, so the parent
  can hand all workers one measurement window).

Conversation with the parent over a ``multiprocessing`` pipe: worker sends ``("ready", n)``
or ``("error", text)``; parent sends ``("start", t0, t1)``; worker measures in [t0, t1),
closes its clients and sends ``("result", WorkerResult)``.

Limits: ``MAX_PENDING_INPUTS`` unanswered inputs remembered per client (older ones are
forgotten and counted as ``latency_overflow``); ``MAX_LATENCY_SAMPLES`` samples per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from websockets.asyncio.client import ClientConnection as WsClient
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed as WsConnectionClosed

from astranet.errors import AstranetError, InvalidState
from astranet.net import ClientConnection, ErrorMessage, Snapshot
from examples.cubes import encode_input

__all__ = [
    "GROUP_SIZE",
    "INPUT_HZ",
    "MAX_LATENCY_SAMPLES",
    "MAX_PENDING_INPUTS",
    "LoadClientError",
    "WorkerResult",
    "worker_main",
]

GROUP_SIZE = 4  # one room's capacity (WIRE rule 2)
INPUT_HZ = 30
PHASE_SLOTS = 10  # send phases per input period: a 300 Hz wake-up spreading clients
# 2 s of inputs at 30 Hz: an input unanswered for that long is a stall, not latency.
MAX_PENDING_INPUTS = 64
# 1,000 clients x 30 Hz x 60 s = 1.8 M; keep the pickled result a few tens of MB at most.
MAX_LATENCY_SAMPLES = 2_000_000
CONNECT_TIMEOUT_S = 20.0
MAX_CONCURRENT_JOINS = 32  # handshakes in flight per worker; the server's accept queue copes
REGION, GAME_MODE = "us-east", "bench"


class LoadClientError(AstranetError):
    """A load client could not connect or join (the run is invalid)."""


@dataclass(slots=True)
class WorkerResult:
    """What one worker measured inside the window (picklable)."""

    clients: int = 0
    snapshots: int = 0
    snapshot_bytes: int = 0  # whole Snapshot messages as received
    snapshot_payload_bytes: int = 0
    full_snapshots: int = 0  # base_id nil
    inputs_sent: int = 0
    disconnects: int = 0
    latency_overflow: int = 0
    input_slots: int = 0  # phase-slot wake-ups of the input task
    late_input_slots: int = 0  # wake-ups more than half a slot late (the worker was behind)
    cpu_s: float = 0.0  # this worker's own CPU seconds inside the window
    latencies_s: array = field(default_factory=lambda: array("d"))


class _Client:
    """One player: protocol state, socket, and its unanswered inputs."""

    __slots__ = ("conn", "pending", "ws")

    def __init__(self, conn: ClientConnection, ws: WsClient) -> None:
        self.conn = conn
        self.ws = ws
        self.pending: deque[tuple[int, float]] = deque()  # (seq, sent_at), oldest first


class _Worker:
    def __init__(self, ws_url: str, groups: int) -> None:
        self.ws_url = ws_url
        self.groups = groups
        self.clients: list[_Client] = []
        self.result = WorkerResult()
        self.measuring = False
        self.stopping = False
        self._joins = asyncio.Semaphore(MAX_CONCURRENT_JOINS)
        self._tasks: list[asyncio.Task[None]] = []

    # -- joining -------------------------------------------------------------------------

    async def join_all(self) -> None:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            groups = await asyncio.gather(*(self._join_group() for _ in range(self.groups)))
        self.clients = [client for group in groups for client in group]
        self.result.clients = len(self.clients)

    async def _join_group(self) -> list[_Client]:
        first = await self._join(None)
        room_id = first.conn.room_id
        assert room_id is not None
        rest = await asyncio.gather(*(self._join(room_id) for _ in range(GROUP_SIZE - 1)))
        return [first, *rest]

    async def _join(self, room_id: str | None) -> _Client:
        async with self._joins:
            ws = await connect(self.ws_url, compression=None, open_timeout=CONNECT_TIMEOUT_S)
            conn = ClientConnection()
            conn.hello()
            if room_id is None:
                conn.find_or_create(REGION, GAME_MODE, party_size=GROUP_SIZE)
            else:
                conn.join_room(room_id)
            for data in conn.data_to_send():
                await ws.send(data)
            while conn.session_key is None:
                conn.receive_data(await ws.recv())
                for msg in conn.messages_received():
                    if isinstance(msg, ErrorMessage):
                        raise LoadClientError(f"join refused: {msg.code}: {msg.message}")
                closing = conn.close_expected()
                if closing is not None:
                    raise LoadClientError(f"join failed: {closing}")
            return _Client(conn, ws)

    # -- running -------------------------------------------------------------------------

    async def read_loop(self, client: _Client) -> None:
        conn, ws, result = client.conn, client.ws, self.result
        pending = client.pending
        try:
            async for data in ws:
                now = time.monotonic()
                conn.receive_data(data)  # type: ignore[arg-type]
                for msg in conn.messages_received():
                    if type(msg) is not Snapshot:
                        continue
                    conn.ack(msg.id)
                    seq = msg.last_input_seq
                    if self.measuring:
                        result.snapshots += 1
                        result.snapshot_bytes += len(data)
                        result.snapshot_payload_bytes += len(msg.payload)
                        result.full_snapshots += msg.base_id is None
                    while pending and seq is not None and pending[0][0] <= seq:
                        _, sent_at = pending.popleft()
                        if self.measuring and len(result.latencies_s) < MAX_LATENCY_SAMPLES:
                            result.latencies_s.append(now - sent_at)
                for out in conn.data_to_send():
                    await ws.send(out)
                if conn.close_expected() is not None:
                    break  # the server broke the protocol: stop talking (counted below)
        except (WsConnectionClosed, InvalidState):
            pass  # InvalidState: ack() after the connection decided to close
        if not self.stopping:
            result.disconnects += 1

    async def input_loop(self) -> None:
        """Send every client's input at INPUT_HZ, one phase slot of clients per wake-up."""
        slot_s = 1.0 / (INPUT_HZ * PHASE_SLOTS)
        slots = [self.clients[i::PHASE_SLOTS] for i in range(PHASE_SLOTS)]
        blobs = _circle_blobs()
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        result = self.result
        while True:
            deadline = start + n * slot_s
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            if self.measuring:
                result.input_slots += 1
                result.late_input_slots += loop.time() - deadline > slot_s / 2
            blob = blobs[(n // PHASE_SLOTS) % len(blobs)]
            for client in slots[n % PHASE_SLOTS]:
                if client.conn.close_expected() is not None:
                    continue
                seq = client.conn.send_input(blob)
                for out in client.conn.data_to_send():
                    with contextlib.suppress(WsConnectionClosed):
                        await client.ws.send(out)
                if len(client.pending) >= MAX_PENDING_INPUTS:
                    client.pending.popleft()
                    result.latency_overflow += self.measuring
                client.pending.append((seq, time.monotonic()))
                result.inputs_sent += self.measuring
            n += 1
            if self.stopping:
                return

    def start_traffic(self) -> None:
        """Start reading (and acking) and sending inputs: the warm-up runs before the window."""
        self._tasks = [asyncio.create_task(self.read_loop(c)) for c in self.clients]
        self._tasks.append(asyncio.create_task(self.input_loop()))

    async def run_window(self, t0: float, t1: float) -> None:
        """Measure during [t0, t1) (time.monotonic), then close every client."""
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        self.measuring = True
        cpu0 = time.process_time()
        await asyncio.sleep(max(0.0, t1 - time.monotonic()))
        self.measuring = False
        self.result.cpu_s = time.process_time() - cpu0
        self.stopping = True
        await asyncio.gather(*(c.ws.close() for c in self.clients), return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _circle_blobs(steps: int = INPUT_HZ) -> list[bytes]:
    """Inputs turning through a full circle each second: avatars keep moving (and changing)
    without hitting a wall. Radius 0.95: a unit diagonal can round past the sanity limit."""
    angles = [2 * math.pi * i / steps for i in range(steps)]
    return [encode_input(0.95 * math.cos(a), 0.95 * math.sin(a)) for a in angles]


async def _serve(pipe: Connection, ws_url: str, groups: int) -> None:
    worker = _Worker(ws_url, groups)
    try:
        await worker.join_all()
    except (OSError, TimeoutError, WsConnectionClosed, AstranetError) as exc:
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    worker.start_traffic()
    pipe.send(("ready", len(worker.clients)))
    loop = asyncio.get_running_loop()
    # The parent answers once every worker is ready; wait off the loop so clients keep
    # reading (and acking) while we wait.
    command = await loop.run_in_executor(None, pipe.recv)
    if command[0] != "start":
        return
    _, t0, t1 = command
    await worker.run_window(t0, t1)
    pipe.send(("result", worker.result))


def worker_main(pipe: Connection, ws_url: str, groups: int) -> None:
    """Process entry point (``multiprocessing`` target)."""
    try:
        asyncio.run(_serve(pipe, ws_url, groups))
    finally:
        pipe.close()
