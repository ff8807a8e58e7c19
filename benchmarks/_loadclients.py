"""Load-client worker for benchmarks/server_load.py: many protocol clients in one process.

A worker process runs one asyncio loop with ``groups * 4`` clients. Each group fills one room:
its first client sends ``FindOrCreate(party_size=4)`` and the other three ``JoinRoom`` the
returned room id, so R groups give exactly R rooms of 4. Every client is a real
:class:`~astranet.net.ClientConnection` (signed inputs, acks) over
``websockets.asyncio.client``.

Timing: one task per worker sends every client's input at 30 Hz (no task-with-sleep per
client), in one of two input phases (``--input-phase``):

* ``spread`` (default): on the worker's own absolute schedule, clients spread over
  ``PHASE_SLOTS`` phases of the period, as naive clients' send times are spread relative to
  the server tick; the task wakes once per slot. An input waits 0..1 period for the next tick.
* ``aligned``: clients time their inputs to arrive just before the server tick, as real
  netcode clients do. Each client estimates the tick schedule from its snapshots' arrival
  times: ``phase = min(arrival - server_tick * period)`` over a sliding window of 1-2 s
  (the library's :class:`~astranet.client.pacing.TickPacer` estimate), of when tick 0
  "arrived" in the client's clock (``time.monotonic``). The worker takes the earliest of its
  clients' estimates (the one least delayed by the server's write order) and sends every
  client's input in one burst ``lead_s`` before the next estimated tick ``k``; the input
  *targets* tick ``k``. Caveat: snapshots leave the server only after the whole tick has
  stepped (every room), so the estimate is the real tick start *plus* the server's shortest
  tick-to-first-snapshot delay, and the lead must cover that delay, the burst's own length
  and the server's reading of the burst (at 100 clients, N=1000, tick mean ~8 ms, leads of
  6 / 10 / 14 / 18 ms missed ~100 / 49 / 0.8 / 0 % of targets: hence the 18 ms default; a
  heavier server needs more). ``target_missed`` counts inputs first acknowledged by
  a snapshot of a later tick than their target (they waited a whole extra period). Until the
  first snapshot arrives the task sends nothing (as a real client would sync clocks first).
  Skipped server ticks shift the schedule later; the window forgets the old phase in <= 2 s.

Protocol (``--protocol``): ``a1`` (default, what the library's clients do) asks for the compact
Snapshot envelope in Hello and folds the newest received snapshot id into the next InputFrame
(one message per tick, WIRE A1); ``v1`` uses the map envelope and a separate Ack per snapshot.

Each client also has a reader task (one ``recv`` loop per socket is unavoidable) that acks
every snapshot (``v1``; ``a1`` remembers it for the next input) and records:

* snapshot bytes (whole WebSocket message, and the payload alone),
* input -> snapshot latency: from sending seq ``s`` to receiving the first snapshot whose
  ``last_input_seq >= s`` (``time.monotonic``, which is system-wide on Linux, so the parent
  can hand all workers one measurement window).

Latency is always measured from the time the input was actually handed to the socket, in
both phases.

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

from astranet.client.pacing import TickPacer
from astranet.errors import AstranetError, InvalidState
from astranet.examples.cubes import encode_input
from astranet.net import ClientConnection, ErrorMessage, Snapshot

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DEFAULT_INPUT_LEAD_MS",
    "GROUP_SIZE",
    "INPUT_HZ",
    "INPUT_PHASES",
    "JOIN_S_PER_GROUP",
    "MAX_LATENCY_SAMPLES",
    "MAX_PENDING_INPUTS",
    "PROTOCOLS",
    "LoadClientError",
    "WorkerResult",
    "worker_main",
]

GROUP_SIZE = 4  # one room's capacity (WIRE rule 2)
INPUT_HZ = 30
PHASE_SLOTS = 10  # send phases per input period: a 300 Hz wake-up spreading clients
INPUT_PHASES = ("spread", "aligned")
#: a1: compact envelope + ack folded into the input (WIRE A1); v1: map envelope + Ack messages.
PROTOCOLS = ("a1", "v1")
DEFAULT_INPUT_LEAD_MS = 18.0  # > the server's tick-to-snapshot delay + burst + read at 100 clients
# 2 s of inputs at 30 Hz: an input unanswered for that long is a stall, not latency.
MAX_PENDING_INPUTS = 64
# 1,000 clients x 30 Hz x 60 s = 1.8 M; keep the pickled result a few tens of MB at most.
MAX_LATENCY_SAMPLES = 2_000_000
CONNECT_TIMEOUT_S = 20.0
JOIN_S_PER_GROUP = 0.6  # extra fleet join time per room of 4 (the server ticks the rooms
# already seated meanwhile: 125 rooms took 25-45 s on the busy 2-core machine)
MAX_CONCURRENT_JOINS = 32  # handshakes in flight per worker; the server's accept queue copes
REGION, GAME_MODE = "us-east", "bench"


class LoadClientError(AstranetError):
    """A load client could not connect or join (the run is invalid)."""


@dataclass(slots=True)
class WorkerResult:
    """What one worker measured inside the window (picklable)."""

    clients: int = 0
    join_s: float = 0.0  # how long seating this worker's clients took
    snapshots: int = 0
    snapshot_bytes: int = 0  # whole Snapshot messages as received
    snapshot_payload_bytes: int = 0
    full_snapshots: int = 0  # base_id nil
    inputs_sent: int = 0
    disconnects: int = 0
    latency_overflow: int = 0
    input_slots: int = 0  # wake-ups of the input task (phase slots; periods when aligned)
    late_input_slots: int = 0  # wake-ups more than half a slot late (the worker was behind)
    targeted_inputs: int = 0  # aligned: answered inputs that had a target tick
    target_missed: int = 0  # ... whose first acking snapshot was of a later tick
    cpu_s: float = 0.0  # this worker's own CPU seconds inside the window
    latencies_s: array = field(default_factory=lambda: array("d"))


class _Client:
    """One player: protocol state, socket, its unanswered inputs and tick-phase estimate."""

    __slots__ = ("conn", "pending", "ticks", "unacked", "ws")

    def __init__(self, conn: ClientConnection, ws: WsClient) -> None:
        self.conn = conn
        self.ws = ws
        self.unacked: int | None = None  # a1: newest snapshot id not yet acked
        # (seq, sent_at, target tick or -1), oldest first
        self.pending: deque[tuple[int, float, int]] = deque()
        # The library's tick-phase estimate (only its phase is used: the worker paces).
        self.ticks = TickPacer(INPUT_HZ)

    def observe_phase(self, arrival_s: float, server_tick: int) -> None:
        self.ticks.observe_snapshot(arrival_s * 1000.0, server_tick)

    @property
    def phase(self) -> float:
        """Estimated arrival time of tick 0's snapshot in seconds (inf before any snapshot)."""
        return self.ticks.phase_ms / 1000.0


class _Worker:
    def __init__(
        self,
        ws_url: str,
        groups: int,
        input_phase: str = "spread",
        input_lead_s: float = DEFAULT_INPUT_LEAD_MS / 1000,
        protocol: str = "a1",
    ) -> None:
        if input_phase not in INPUT_PHASES:
            raise ValueError(f"input_phase: expected one of {INPUT_PHASES}, got {input_phase!r}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {protocol!r}")
        self.one_message = protocol == "a1"
        self.ws_url = ws_url
        self.groups = groups
        self.aligned = input_phase == "aligned"
        self.input_lead_s = input_lead_s
        self.clients: list[_Client] = []
        self.result = WorkerResult()
        self.measuring = False
        self.stopping = False
        self._joins = asyncio.Semaphore(MAX_CONCURRENT_JOINS)
        self._tasks: list[asyncio.Task[None]] = []

    # -- joining -------------------------------------------------------------------------

    async def join_all(self) -> None:
        started = time.monotonic()
        # Every join's own handshake is bounded by CONNECT_TIMEOUT_S; the whole fleet gets
        # longer on a busy machine (hundreds of joins queue behind MAX_CONCURRENT_JOINS).
        async with asyncio.timeout(CONNECT_TIMEOUT_S + JOIN_S_PER_GROUP * self.groups):
            groups = await asyncio.gather(*(self._join_group() for _ in range(self.groups)))
        self.clients = [client for group in groups for client in group]
        self.result.clients = len(self.clients)
        self.result.join_s = time.monotonic() - started

    async def _join_group(self) -> list[_Client]:
        first = await self._join(None)
        room_id, party_token = first.conn.room_id, first.conn.party_token
        assert room_id is not None
        rest = await asyncio.gather(
            *(self._join(room_id, party_token) for _ in range(GROUP_SIZE - 1))
        )
        return [first, *rest]

    async def _join(self, room_id: str | None, party_token: bytes | None = None) -> _Client:
        async with self._joins:
            ws = await connect(self.ws_url, compression=None, open_timeout=CONNECT_TIMEOUT_S)
            conn = ClientConnection()
            conn.hello(compact=self.one_message)
            if room_id is None:
                conn.find_or_create(REGION, GAME_MODE, party_size=GROUP_SIZE)
            else:
                conn.join_room(room_id, party_token)  # the held seats are the party's (A4)
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
        aligned = self.aligned
        try:
            async for data in ws:
                now = time.monotonic()
                conn.receive_data(data)  # type: ignore[arg-type]
                for msg in conn.messages_received():
                    if type(msg) is not Snapshot:
                        continue
                    if self.one_message:
                        client.unacked = msg.id  # folded into the next input
                    else:
                        conn.ack(msg.id)
                    seq = msg.last_input_seq
                    if aligned:
                        client.observe_phase(now, msg.server_tick)
                    if self.measuring:
                        result.snapshots += 1
                        result.snapshot_bytes += len(data)
                        result.snapshot_payload_bytes += len(msg.payload)
                        result.full_snapshots += msg.base_id is None
                    while pending and seq is not None and pending[0][0] <= seq:
                        _, sent_at, target = pending.popleft()
                        if self.measuring and len(result.latencies_s) < MAX_LATENCY_SAMPLES:
                            result.latencies_s.append(now - sent_at)
                        if self.measuring and target >= 0:
                            result.targeted_inputs += 1
                            result.target_missed += msg.server_tick > target
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
        if self.aligned:
            await self._aligned_input_loop()
            return
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
            await self._send_inputs(
                slots[n % PHASE_SLOTS], blobs[(n // PHASE_SLOTS) % len(blobs)], -1
            )
            n += 1
            if self.stopping:
                return

    async def _aligned_input_loop(self) -> None:
        """Send every client's input in one burst ``input_lead_s`` before the estimated tick."""
        period_s = 1.0 / INPUT_HZ
        late_s = period_s / PHASE_SLOTS / 2  # the same threshold as a spread slot's
        lead_s = self.input_lead_s
        blobs = _circle_blobs()
        result = self.result
        last_target = -1
        n = 0
        while True:
            phase = min((c.phase for c in self.clients), default=math.inf)
            if math.isinf(phase):
                # No snapshot yet: send nothing. An untimed input followed by timed ones can
                # put two frames into one tick (a standing queue of one frame until the
                # server's drain rule removes it, a period of extra latency meanwhile).
                await asyncio.sleep(period_s)
                if self.stopping:
                    return
                continue
            # The next tick we can still send ahead of (never one already targeted).
            target = max(last_target + 1, math.ceil((time.monotonic() + lead_s - phase) / period_s))
            deadline = phase + target * period_s - lead_s
            last_target = target
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            if self.measuring:
                result.input_slots += 1
                result.late_input_slots += time.monotonic() - deadline > late_s
            await self._send_inputs(self.clients, blobs[n % len(blobs)], target)
            n += 1
            if self.stopping:
                return

    async def _send_inputs(self, clients: list[_Client], blob: bytes, target: int) -> None:
        result = self.result
        for client in clients:
            if client.conn.close_expected() is not None:
                continue
            ack, client.unacked = client.unacked, None
            seq = client.conn.send_input(blob, ack=ack)
            for out in client.conn.data_to_send():
                with contextlib.suppress(WsConnectionClosed):
                    await client.ws.send(out)
            if len(client.pending) >= MAX_PENDING_INPUTS:
                client.pending.popleft()
                result.latency_overflow += self.measuring
            client.pending.append((seq, time.monotonic(), target))  # actual send time
            result.inputs_sent += self.measuring

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
    without hitting a wall. Radius 0.95 keeps the figures comparable with earlier runs."""
    angles = [2 * math.pi * i / steps for i in range(steps)]
    return [encode_input(0.95 * math.cos(a), 0.95 * math.sin(a)) for a in angles]


async def _serve(
    pipe: Connection,
    ws_url: str,
    groups: int,
    input_phase: str,
    input_lead_s: float,
    protocol: str,
) -> None:
    worker = _Worker(ws_url, groups, input_phase, input_lead_s, protocol)
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


def worker_main(
    pipe: Connection,
    ws_url: str,
    groups: int,
    input_phase: str = "spread",
    input_lead_s: float = DEFAULT_INPUT_LEAD_MS / 1000,
    protocol: str = "a1",
) -> None:
    """Process entry point (``multiprocessing`` target)."""
    try:
        asyncio.run(_serve(pipe, ws_url, groups, input_phase, input_lead_s, protocol))
    finally:
        pipe.close()
