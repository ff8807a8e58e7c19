"""Load-client worker for benchmarks/server_load.py: many protocol clients in one process.

A worker process runs one event loop (uvloop when installed, as the server does; asyncio's
otherwise) with ``groups * 4`` clients. Each group fills one room: its first client sends
``FindOrCreate(party_size=4)`` and the other three ``JoinRoom`` the returned room id (with the
party token, WIRE A4), so R groups give exactly R rooms of 4.

Each client is an honest protocol client on a real TCP socket over loopback, but built to be
cheap, so that 1,000 of them fit on one core and leave the other to the server (issue 12):

* **one ``asyncio.Protocol`` per socket**, no task, coroutine or future per message. The HTTP
  upgrade is websockets' own sans-I/O :class:`~websockets.client.ClientProtocol` (request,
  ``Sec-WebSocket-Accept`` check); once open, frames are written and split here: every frame
  we send is masked (RFC 6455 5.3: a fresh 4-byte key per frame, drawn from ``os.urandom``
  once per burst, websockets' C ``apply_mask``), server frames are checked unmasked with RSV
  bits clear, fragmented messages are reassembled, a Ping is answered with a masked Pong and a
  Close with a Close.
* **joining** goes through the library's :class:`~astranet.net.ClientConnection` (Hello with
  ``compact``, FindOrCreate/JoinRoom, the typed replies); after ``JoinAccepted`` the client
  keeps only what the play phase needs: its input ``seq`` (continuing the connection's), an
  :class:`~astranet.net.signing.InputSigner` (the session's HMAC key absorbed once; each frame
  copies the keyed state) and the newest unacknowledged snapshot id.
* **inputs**: a signed ``InputFrame`` per client at 30 Hz, encoded as the library encodes it
  (the same bytes as ``encode(InputFrame(...))``, tests/test_server_load_smoke.py checks), with
  the newest snapshot id folded in as ``ack`` (``a1``) or followed by nothing (``v1``: a
  separate ``Ack`` goes out for every snapshot as it arrives).
* **snapshots**: every message received is decoded down to its envelope: a compact one with
  the library's :func:`~astranet.net.envelope.parse_compact` (every field range-checked), a map
  one with :func:`~astranet.net.messages.decode_server_message` (the full typed decode). The
  *payload* is not decoded (only counted), as in earlier runs; Colyseus' generator decodes
  its patches.

Timing: once every client is seated (until then seated clients keep quiet, see
``_Worker.start_traffic``), one timer per worker (``loop.call_later``) sends every client's
input at 30 Hz, in one of two input phases (``--input-phase``):

* ``spread`` (default): on the worker's own absolute schedule, clients spread over
  ``PHASE_SLOTS`` phases of the period, as naive clients' send times are spread relative to
  the server tick; the timer fires once per slot. An input waits 0..1 period for the next tick.
* ``aligned``: inputs timed to arrive just before the server tick, as real netcode clients do.
  The worker estimates the tick schedule from its snapshots' arrival times:
  ``phase = min(arrival - server_tick * period)`` over a sliding window of one to two blocks of
  ``PHASE_BLOCK`` ticks (the library's :class:`~astranet.client.pacing.TickPacer` estimate,
  taken over all of the worker's clients at once, which is the earliest of their estimates),
  and sends every client's input in one burst ``lead_s`` before the next estimated tick ``k``;
  the input *targets* tick ``k``. The estimate is the tick start plus the server's shortest
  tick-to-first-snapshot delay, so the lead must cover that delay, the burst's own length and
  the server's reading of the burst (the 18 ms default was measured at 100 clients, N=1000; a
  heavier server needs more). ``target_missed`` counts inputs first acknowledged by a snapshot
  of a later tick than their target. Until the first snapshot arrives nothing is sent.

Measured per worker inside the window: snapshot bytes (whole WebSocket message, and the payload
alone), input -> snapshot latency (from handing seq ``s`` to the socket to receiving the first
snapshot whose ``last_input_seq >= s``; ``time.monotonic``, system-wide on Linux, so the parent
hands all workers one window) and the worker's own CPU seconds (``time.process_time``).

Conversation with the parent over a ``multiprocessing`` pipe: worker sends ``("ready", n)``
or ``("error", text)``; parent sends ``("start", t0, t1)``; worker measures in [t0, t1),
closes its clients (closing handshake, bounded by ``CLOSE_TIMEOUT_S``) and sends
``("result", WorkerResult)``.

Limits: ``MAX_PENDING_INPUTS`` unanswered inputs remembered per client (older ones are
forgotten and counted as ``latency_overflow``); ``MAX_LATENCY_SAMPLES`` samples per worker;
messages up to ``MAX_MESSAGE_BYTES`` (a larger one fails the client 1009).
Benchmark: this is the load generator of one (benchmarks/server_load.py).
"""

from __future__ import annotations

import asyncio
import math
import os
import struct
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgpack
from websockets.client import ClientProtocol
from websockets.http11 import Response
from websockets.protocol import State
from websockets.speedups import apply_mask
from websockets.uri import parse_uri

from astranet.errors import AstranetError, ProtocolError
from astranet.examples.cubes import encode_input
from astranet.net import ClientConnection, ErrorMessage, Snapshot
from astranet.net.envelope import COMPACT_MARKER, parse_compact
from astranet.net.limits import MAX_MESSAGE_BYTES
from astranet.net.messages import decode_server_message
from astranet.net.signing import InputSigner

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
    "event_loop_name",
    "input_frame_bytes",
    "join_limit_s",
    "masked_frame",
    "runqueue_wait_s",
    "worker_main",
]

GROUP_SIZE = 4  # one room's capacity (WIRE rule 2)
INPUT_HZ = 30
PHASE_SLOTS = 10  # send phases per input period: a 300 Hz timer spreading clients
PHASE_BLOCK = 30  # ticks per block of the aligned phase minimum (~1 s), as TickPacer's
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
QUIET_PING_S = 10.0  # seated clients waiting for the fleet ping the server this often
CLOSE_TIMEOUT_S = 5.0  # the whole fleet's closing handshakes, then the rest are aborted
REGION, GAME_MODE = "us-east", "bench"

# RFC 6455 5.2: FIN + opcode, then MASK + length (7 bits, or 126 + u16, or 127 + u64).
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0, 1, 2, 8, 9, 10
_FIN = 0x80
_MASK = 0x80
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
_CLOSE_NORMAL = struct.pack("!H", 1000)
_packb = msgpack.Packer(use_bin_type=True).pack


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
    protocol_errors: int = 0  # server messages that did not decode, ProtocolError replies
    latency_overflow: int = 0
    input_slots: int = 0  # timer firings (phase slots; periods when aligned)
    late_input_slots: int = 0  # firings more than half a slot late (the worker was behind)
    targeted_inputs: int = 0  # aligned: answered inputs that had a target tick
    target_missed: int = 0  # ... whose first acking snapshot was of a later tick
    cpu_s: float = 0.0  # this worker's own CPU seconds inside the window
    wait_s: float = 0.0  # ... and seconds it was runnable but waited for a CPU (schedstat)
    event_loop: str = "asyncio"
    close_codes: dict[int, int] = field(default_factory=dict)  # server Close codes -> count
    latencies_s: array = field(default_factory=lambda: array("d"))


def masked_frame(opcode: int, payload: bytes, mask: bytes) -> bytes:
    """One final, masked client frame (RFC 6455 5.2-5.3) with the 4-byte key ``mask``."""
    length = len(payload)
    if length < 126:
        header = bytes((_FIN | opcode, _MASK | length))
    elif length < 65536:
        header = bytes((_FIN | opcode, _MASK | 126)) + _U16.pack(length)
    else:
        header = bytes((_FIN | opcode, _MASK | 127)) + _U64.pack(length)
    return header + mask + apply_mask(payload, mask)


def input_frame_bytes(seq: int, tick_ms: int, blob: bytes, sig: bytes, ack: int | None) -> bytes:
    """``encode(InputFrame(seq, tick_ms, blob, sig, ack))`` without building the dataclass:
    ``t`` first, fields in declaration order, ``ack`` omitted when None (messages.py)."""
    if ack is None:
        return _packb({"t": "InputFrame", "seq": seq, "tick_ms": tick_ms, "input_blob": blob,
                       "sig": sig})  # fmt: skip
    return _packb({"t": "InputFrame", "seq": seq, "tick_ms": tick_ms, "input_blob": blob,
                   "sig": sig, "ack": ack})  # fmt: skip


def event_loop_name() -> str:
    """The loop the workers run: uvloop when installed, else asyncio's."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


class _Client(asyncio.Protocol):
    """One player's socket: upgrade, join through ClientConnection, then the lean play path."""

    __slots__ = (
        "_buf",
        "_fragments",
        "closed",
        "conn",
        "handshake",
        "joined",
        "lost",
        "next_seq",
        "opened",
        "pending",
        "playing",
        "signer",
        "target",
        "transport",
        "unacked",
        "worker",
    )

    def __init__(self, worker: _Worker, target: tuple[str, bytes | None] | None) -> None:
        loop = asyncio.get_running_loop()
        self.worker = worker
        self.target = target  # None: FindOrCreate; else JoinRoom(room_id, party_token)
        self.handshake: ClientProtocol | None = ClientProtocol(
            worker.uri, max_size=MAX_MESSAGE_BYTES
        )
        self.conn = ClientConnection()
        self.transport: asyncio.Transport | None = None
        self.joined: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.opened = False
        self.playing = False
        self.closed = False  # we sent (or answered) a Close, or the socket is gone
        self.signer: InputSigner | None = None
        self.next_seq = 0
        self.unacked: int | None = None  # a1: newest snapshot id not yet acked
        # (seq, sent_at, target tick or -1), oldest first
        self.pending: deque[tuple[int, float, int]] = deque()
        self._buf = b""
        self._fragments: list[bytes] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        handshake = self.handshake
        assert handshake is not None
        handshake.send_request(handshake.connect())
        for data in handshake.data_to_send():
            self.transport.write(data)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.playing = False
        if not self.lost.done():
            self.lost.set_result(None)
        self._fail_join("the server closed the connection while joining")
        if not self.worker.stopping:
            self.worker.result.disconnects += 1

    def data_received(self, data: bytes) -> None:
        if not self.opened:
            self._upgrade(data)
            return
        buf = self._buf + data if self._buf else data
        size = len(buf)
        pos = 0
        now = time.monotonic()
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            start = pos + 2
            if length == 126:
                if size - start < 2:
                    break
                (length,) = _U16.unpack_from(buf, start)
                start += 2
            elif length == 127:
                if size - start < 8:
                    break
                (length,) = _U64.unpack_from(buf, start)
                start += 8
            if b1 & _MASK or b0 & 0x70:  # servers never mask; no extension was negotiated
                self._fail(1002, "masked or RSV frame from the server")
                return
            if length > MAX_MESSAGE_BYTES:
                self._fail(1009, "frame over the message limit")
                return
            end = start + length
            if end > size:
                break
            pos = end
            opcode = b0 & 0x0F
            if opcode == _OP_BINARY and b0 & _FIN and self._fragments is None:
                self._message(buf[start:end], now)
            elif opcode in (_OP_BINARY, _OP_TEXT, _OP_CONT):
                self._fragment(opcode, b0 & _FIN, buf[start:end], now)
            else:
                self._control(opcode, buf[start:end])
            if self.transport is None or self.transport.is_closing():
                return
        self._buf = buf[pos:] if pos < size else b""

    # -- framing -------------------------------------------------------------------------

    def _upgrade(self, data: bytes) -> None:
        handshake = self.handshake
        assert handshake is not None
        handshake.receive_data(data)
        # Frames sent right after the 101 response (none today: the server waits for Hello).
        early = [e.data for e in handshake.events_received() if not isinstance(e, Response)]
        if handshake.handshake_exc is not None:
            self._fail_join(f"handshake refused: {handshake.handshake_exc}")
            self._abort()
            return
        if handshake.state is not State.OPEN:
            return
        self.opened = True
        self.handshake = None  # from here on, frames are ours
        worker = self.worker
        conn = self.conn
        conn.hello(compact=worker.one_message)
        if self.target is None:
            conn.find_or_create(REGION, GAME_MODE, party_size=GROUP_SIZE)
        else:
            conn.join_room(*self.target)  # the held seats are the party's (A4)
        self._flush_conn()
        now = time.monotonic()
        for payload in early:
            self._message(payload, now)

    def _fragment(self, opcode: int, fin: int, payload: bytes, now: float) -> None:
        if opcode == _OP_TEXT:
            self._fail(1003, "text frame from the server")
            return
        if (opcode == _OP_CONT) != (self._fragments is not None):
            self._fail(1002, "unexpected continuation frame")
            return
        parts = self._fragments if self._fragments is not None else []
        parts.append(payload)
        if sum(map(len, parts)) > MAX_MESSAGE_BYTES:
            self._fail(1009, "message over the limit")
            return
        if fin:
            self._fragments = None
            self._message(b"".join(parts), now)
        else:
            self._fragments = parts

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == _OP_PING:
            self._write(_OP_PONG, payload)
        elif opcode == _OP_CLOSE:
            if not self.worker.stopping:  # the server hung up on us: why?
                code = _U16.unpack_from(payload)[0] if len(payload) >= 2 else 1005
                codes = self.worker.result.close_codes
                codes[code] = codes.get(code, 0) + 1
            if not self.closed:  # the server's close first: echo its code, then hang up
                self.closed = True
                self._write(_OP_CLOSE, payload[:2])
            assert self.transport is not None
            self.transport.close()
        elif opcode != _OP_PONG:
            self._fail(1002, f"unknown opcode {opcode}")

    def _write(self, opcode: int, payload: bytes, mask: bytes | None = None) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(masked_frame(opcode, payload, mask or os.urandom(4)))

    def _flush_conn(self) -> None:
        for data in self.conn.data_to_send():
            self._write(_OP_BINARY, data)

    def close(self) -> None:
        """Start the closing handshake (the server answers and closes the TCP)."""
        if not self.closed:
            self.closed = True
            self.playing = False
            self._write(_OP_CLOSE, _CLOSE_NORMAL)

    def _fail(self, code: int, reason: str) -> None:
        """The server broke the protocol: say so (Close ``code``) and hang up."""
        self.worker.result.protocol_errors += 1
        self._fail_join(reason)
        if not self.closed:
            self.closed = True
            self._write(_OP_CLOSE, struct.pack("!H", code))
        self._abort()

    def _abort(self) -> None:
        self.playing = False
        if self.transport is not None:
            self.transport.close()

    def _fail_join(self, reason: str) -> None:
        if not self.joined.done():
            self.joined.set_exception(LoadClientError(f"join failed: {reason}"))

    # -- messages ------------------------------------------------------------------------

    def _message(self, data: bytes, now: float) -> None:
        if not self.playing:
            self._join_message(data, now)
            return
        try:
            if data[0] == COMPACT_MARKER:
                snapshot_id, tick, base_id, _, payload, seq = parse_compact(data)
                self.worker.on_snapshot(self, snapshot_id, tick, base_id, seq, data, payload, now)
                return
            msg = decode_server_message(data)
        except ProtocolError as exc:
            self._fail(exc.close_code or 1002, exc.message)
            return
        if type(msg) is Snapshot:
            self.worker.on_snapshot(
                self, msg.id, msg.server_tick, msg.base_id, msg.last_input_seq, data,
                msg.payload, now,
            )  # fmt: skip
        elif type(msg) is ErrorMessage:
            self.worker.result.protocol_errors += 1
        # Pong, Events, RateLimited: nothing to do for a load client.

    def _join_message(self, data: bytes, now: float) -> None:
        conn = self.conn
        conn.receive_data(data)
        for msg in conn.messages_received():
            if type(msg) is ErrorMessage:
                self._fail_join(f"refused: {msg.code}: {msg.message}")
            elif type(msg) is Snapshot and self.playing:
                self.worker.on_snapshot(
                    self, msg.id, msg.server_tick, msg.base_id, msg.last_input_seq, data,
                    msg.payload, now,
                )  # fmt: skip
            if conn.session_key is not None and not self.playing:
                self.signer = InputSigner(conn.session_key)
                self.next_seq = conn.next_seq
                self.playing = True
                if not self.joined.done():
                    self.joined.set_result(None)
                if not self.worker.started and self.transport is not None:
                    self.transport.pause_reading()  # quiet until the whole fleet is seated
        closing = conn.close_expected()
        if closing is not None:
            self._fail(*closing)
        else:
            self._flush_conn()


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
        self.uri = parse_uri(ws_url)
        self.groups = groups
        self.aligned = input_phase == "aligned"
        self.input_lead_s = input_lead_s
        self.clients: list[_Client] = []
        self._all: list[_Client] = []  # every client started, seated or not
        self.result = WorkerResult()
        self.measuring = False
        self.stopping = False
        self.started = False  # start_traffic ran: seated clients read and play
        self._quiet_pings: asyncio.TimerHandle | None = None
        self._joins = asyncio.Semaphore(MAX_CONCURRENT_JOINS)
        self._timer: asyncio.TimerHandle | None = None
        self._period_s = 1.0 / INPUT_HZ
        self._blobs = _circle_blobs()
        self._n = 0  # timer firings so far
        # aligned: the phase minimum over the current and the previous block of ticks
        self._phase_block = -1
        self._phase_cur = math.inf
        self._phase_prev = math.inf
        self._last_target = -1

    # -- joining -------------------------------------------------------------------------

    async def join_all(self, limit_s: float | None = None) -> None:
        """Seat every group; ``limit_s`` bounds it (default: ``join_limit_s(groups)``)."""
        started = time.monotonic()
        self._ping_quiet()
        # The fleet's joins are bounded together (hundreds queue behind MAX_CONCURRENT_JOINS,
        # and a busy server answers late).
        limit_s = join_limit_s(self.groups) if limit_s is None else limit_s
        try:
            async with asyncio.timeout(limit_s):
                groups = await asyncio.gather(*(self._join_group() for _ in range(self.groups)))
        except TimeoutError:
            seated = sum(c.playing for c in self._all)
            states: dict[str, int] = {}
            for c in self._all:
                if not c.playing:
                    state = "tcp" if c.transport is None else "upgrade" if not c.opened else ""
                    state = state or f"{c.conn.phase.value} ({type(c.target).__name__})"
                    states[state] = states.get(state, 0) + 1
            raise LoadClientError(
                f"{seated} of {self.groups * GROUP_SIZE} clients seated in {limit_s:.0f} s; "
                f"{len(self._all) - seated} started but not seated: {states}"
            ) from None
        self.clients = [client for group in groups for client in group]
        self.result.clients = len(self.clients)
        self.result.join_s = time.monotonic() - started

    async def _join_group(self) -> list[_Client]:
        first = await self._join(None)
        room_id, party_token = first.conn.room_id, first.conn.party_token
        assert room_id is not None
        rest = await asyncio.gather(
            *(self._join((room_id, party_token)) for _ in range(GROUP_SIZE - 1))
        )
        return [first, *rest]

    async def _join(self, target: tuple[str, bytes | None] | None) -> _Client:
        loop = asyncio.get_running_loop()
        async with self._joins:
            client = _Client(self, target)
            self._all.append(client)
            await loop.create_connection(lambda: client, self.uri.host, self.uri.port)
            await client.joined
            return client

    def _ping_quiet(self) -> None:
        """A WebSocket Ping from every quiet seated client each QUIET_PING_S: a server hears
        from each connection, so its keepalive (ping after 20 s of silence, fail 20 s later:
        we do not read meanwhile) does not drop clients seated early in a long join."""
        for client in self._all:
            if client.playing:
                client._write(_OP_PING, b"")
        self._quiet_pings = asyncio.get_running_loop().call_later(QUIET_PING_S, self._ping_quiet)

    # -- playing -------------------------------------------------------------------------

    def on_snapshot(
        self,
        client: _Client,
        snapshot_id: int,
        tick: int,
        base_id: int | None,
        seq: int | None,
        data: bytes,
        payload: bytes,
        now: float,
    ) -> None:
        """One snapshot's envelope, decoded: ack it, time the inputs it acknowledges."""
        if self.one_message:
            client.unacked = snapshot_id  # folded into the next input
        else:
            client._write(_OP_BINARY, _packb({"t": "Ack", "snapshot_id": snapshot_id}))
        if self.aligned:
            self._observe_phase(now, tick)
        result = self.result
        measuring = self.measuring
        if measuring:
            result.snapshots += 1
            result.snapshot_bytes += len(data)
            result.snapshot_payload_bytes += len(payload)
            result.full_snapshots += base_id is None
        pending = client.pending
        if seq is None:
            return
        while pending and pending[0][0] <= seq:
            _, sent_at, target = pending.popleft()
            if measuring:
                if len(result.latencies_s) < MAX_LATENCY_SAMPLES:
                    result.latencies_s.append(now - sent_at)
                if target >= 0:
                    result.targeted_inputs += 1
                    result.target_missed += tick > target

    def _observe_phase(self, arrival_s: float, tick: int) -> None:
        block = tick // PHASE_BLOCK
        if block > self._phase_block:
            self._phase_prev, self._phase_cur, self._phase_block = self._phase_cur, math.inf, block
        value = arrival_s - tick * self._period_s
        if value < self._phase_cur:
            self._phase_cur = value

    @property
    def phase(self) -> float:
        """Estimated arrival time of tick 0's snapshot in seconds (inf before any snapshot)."""
        return min(self._phase_prev, self._phase_cur)

    def _send_inputs(self, clients: list[_Client], blob: bytes, target: int) -> None:
        result = self.result
        measuring = self.measuring
        one_message = self.one_message
        masks = os.urandom(4 * len(clients))
        tick_ms = int(time.monotonic() * 1000)  # the client clock, as ClientConnection's
        monotonic = time.monotonic
        for i, client in enumerate(clients):
            if not client.playing:
                continue
            seq = client.next_seq
            client.next_seq = seq + 1
            sig = client.signer.sign(seq, tick_ms, blob)  # type: ignore[union-attr]
            ack = None
            if one_message:
                ack, client.unacked = client.unacked, None
            frame = input_frame_bytes(seq, tick_ms, blob, sig, ack)
            client.transport.write(  # type: ignore[union-attr]
                masked_frame(_OP_BINARY, frame, masks[4 * i : 4 * i + 4])
            )
            pending = client.pending
            if len(pending) >= MAX_PENDING_INPUTS:
                pending.popleft()
                result.latency_overflow += measuring
            pending.append((seq, monotonic(), target))  # actual send time
            result.inputs_sent += measuring

    def _later(self, delay_s: float, callback: Callable[..., None], *args: Any) -> None:
        if not self.stopping:
            self._timer = asyncio.get_running_loop().call_later(delay_s, callback, *args)

    def _spread_fire(self, start: float) -> None:
        """Send one phase slot of clients; re-arm for the next slot (absolute schedule)."""
        slot_s = self._period_s / PHASE_SLOTS
        n = self._n
        now = time.monotonic()
        if self.measuring:
            self.result.input_slots += 1
            self.result.late_input_slots += now - (start + n * slot_s) > slot_s / 2
        blob = self._blobs[(n // PHASE_SLOTS) % len(self._blobs)]
        self._send_inputs(self.clients[n % PHASE_SLOTS :: PHASE_SLOTS], blob, -1)
        self._n = n + 1
        self._later(start + (n + 1) * slot_s - time.monotonic(), self._spread_fire, start)

    def _aligned_arm(self) -> None:
        """Arm the timer ``input_lead_s`` before the next estimated tick not yet targeted."""
        phase = self.phase
        now = time.monotonic()
        if math.isinf(phase):
            # No snapshot yet: send nothing. An untimed input followed by timed ones can put
            # two frames into one tick (a standing queue of one frame until the server's drain
            # rule removes it, a period of extra latency meanwhile).
            self._later(self._period_s, self._aligned_arm)
            return
        period_s, lead_s = self._period_s, self.input_lead_s
        target = max(self._last_target + 1, math.ceil((now + lead_s - phase) / period_s))
        deadline = phase + target * period_s - lead_s
        self._last_target = target
        self._later(deadline - now, self._aligned_fire, target, deadline)

    def _aligned_fire(self, target: int, deadline: float) -> None:
        if self.measuring:
            late_s = self._period_s / PHASE_SLOTS / 2  # the same threshold as a spread slot's
            self.result.input_slots += 1
            self.result.late_input_slots += time.monotonic() - deadline > late_s
        self._send_inputs(self.clients, self._blobs[self._n % len(self._blobs)], target)
        self._n += 1
        self._aligned_arm()

    def start_traffic(self) -> None:
        """Every client is seated: start reading and the input timer (the warm-up runs
        before the window). Until now seated clients kept quiet, their reading paused, so
        the server (whose unsent snapshots to them are replaced by newer ones) could seat the
        whole fleet even when it cannot carry it playing: measured, 1,000 clients that played
        from their seat on left a saturated server seating ~720 in 170 s."""
        self.started = True
        if self._quiet_pings is not None:
            self._quiet_pings.cancel()
        for client in self.clients:
            if client.transport is not None and not client.transport.is_closing():
                client.transport.resume_reading()
        if self.aligned:
            self._aligned_arm()
        else:
            self._spread_fire(time.monotonic())

    async def run_window(self, t0: float, t1: float) -> None:
        """Measure during [t0, t1) (time.monotonic), then close every client."""
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        self.measuring = True
        cpu0, wait0 = time.process_time(), runqueue_wait_s()
        await asyncio.sleep(max(0.0, t1 - time.monotonic()))
        self.measuring = False
        self.result.cpu_s = time.process_time() - cpu0
        self.result.wait_s = runqueue_wait_s() - wait0
        self.stopping = True
        if self._timer is not None:
            self._timer.cancel()
        for client in self.clients:
            client.close()
        lost = [client.lost for client in self.clients]
        if lost:
            await asyncio.wait(lost, timeout=CLOSE_TIMEOUT_S)
        for client in self.clients:
            if client.transport is not None and not client.lost.done():
                client.transport.abort()


def join_limit_s(rooms: int) -> float:
    """How long seating ``rooms`` rooms of 4 may take (all workers together: they share one
    server, which seats players while it ticks the rooms already seated)."""
    return CONNECT_TIMEOUT_S + JOIN_S_PER_GROUP * rooms


def runqueue_wait_s(pid: int | str = "self") -> float:
    """Seconds the threads of process ``pid`` spent runnable but waiting for a CPU (Linux
    ``/proc/<pid>/task/*/schedstat``, field 2; 0 where the kernel keeps no schedstats)."""
    total_ns = 0
    for path in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total_ns += int(path.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the thread just exited
    return total_ns / 1e9


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
    join_limit: float | None,
) -> None:
    worker = _Worker(ws_url, groups, input_phase, input_lead_s, protocol)
    worker.result.event_loop = event_loop_name()
    try:
        await worker.join_all(join_limit)
    except (OSError, TimeoutError, AstranetError) as exc:
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
    join_limit: float | None = None,
) -> None:
    """Process entry point (``multiprocessing`` target); ``join_limit`` in seconds (default
    ``join_limit_s(groups)``; a run of several workers passes the bound of all its rooms)."""
    main = _serve(pipe, ws_url, groups, input_phase, input_lead_s, protocol, join_limit)
    try:
        if event_loop_name() == "uvloop":
            import uvloop

            uvloop.run(main)
        else:
            asyncio.run(main)
    finally:
        pipe.close()
