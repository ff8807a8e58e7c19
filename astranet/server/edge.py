"""The WebSocket edge: one ``asyncio.Protocol`` per connection over websockets' sans-I/O core.

No coroutine, task, future or ``await`` per connection or per message. ``data_received``
feeds websockets' :class:`~websockets.server.ServerProtocol` (the same parser its own servers
use: HTTP upgrade, framing, masking, fragmentation, ping/pong, the closing handshake, the size
limit) and hands every complete message to :meth:`WebSocketEdge.on_message` synchronously.
Replies go out with ``transport.write`` at once. Deadlines are ``loop.call_later`` timers:

* **open**: the HTTP upgrade must complete within ``open_timeout_s`` (else the TCP is dropped);
* **keepalive**: every ``ping_interval_s`` a connection that received nothing for that long
  gets a Ping; one that stays silent ``ping_timeout_s`` longer is failed 1011 (games send
  inputs 30 times a second, so a live client never sees a ping);
* **close**: after our close frame the peer has ``close_timeout_s`` to finish the closing
  handshake (and its TCP close), else the transport is aborted.

Backpressure: the transport's write-buffer limits are ``(high=0, low=0)``, so
:attr:`writable` is False exactly while the kernel has not taken everything written;
``resume_writing`` (buffer drained) calls :meth:`on_writable`. Subclasses use it to hold the
newest snapshot instead of queueing stale ones (a slow client costs the tick nothing).

A non-upgrade request gets websockets' own answers (``426 Upgrade Required`` for a plain GET,
``400`` for a bad handshake, ``405`` for another method). :meth:`process_request` may refuse a
request with its own response (e.g. per-peer bounds). ``request_path`` keeps the upgrade
request's path and query (``?token=`` for browsers, WIRE A4); ``origins`` is websockets' own
Origin check (403 for others). TLS: pass ``ssl=`` to
``create_server``; the code path is the same.

Inbound frames: websockets parses the upgrade, control frames and anything malformed. Once the
upgrade is done (at a frame boundary), the edge splits *data* frames itself (a header read
and websockets' C ``apply_mask``; websockets' generator parser is ~4 us a frame) and feeds
websockets only whole control frames, so its state machine still answers pings, runs the
closing handshake and fails bad frames with its own close codes. Fragmented messages are
reassembled here within ``max_message_bytes`` (1009 above it). Pings beyond
``PING_RATE_PER_S`` (burst ``PING_BURST``) fail the connection 1008: each one costs a parse
and a pong, and the protocol's own rate limit only sees messages.

Server frames are unmasked and we negotiate no extension, so a binary message is a 2-10 byte
header plus the payload (RFC 6455 5.2): :func:`binary_frame` writes it directly instead of
building a websockets ``Frame`` (a third of the cost of a snapshot send), and a snapshot is
header, envelope head and payload joined once (:func:`binary_frame_header`).
Benchmark: benchmarks/protocol.py ("edge InputFrame path", "snapshot send per client").
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Sequence
from typing import cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import SEND_EOF, State
from websockets.server import ServerProtocol
from websockets.speedups import apply_mask

from astranet.net.ratelimit import TokenBucket

__all__ = [
    "CLOSE_TIMEOUT_S",
    "OPEN_TIMEOUT_S",
    "PING_INTERVAL_S",
    "PING_TIMEOUT_S",
    "WebSocketEdge",
    "binary_frame",
    "binary_frame_header",
]

log = logging.getLogger(__name__)
# websockets logs every open and close at INFO; one line per connection is noise at scale.
_ws_logger = logging.getLogger("astranet.server.edge.websockets")
_ws_logger.setLevel(logging.WARNING)

#: A client that has not finished its HTTP upgrade by then is dropped (websockets' default).
OPEN_TIMEOUT_S = 10.0
#: Seconds a peer has to answer our close frame before the TCP connection is dropped: a kicked
#: or shut-down client that never answers must not hold a socket (websockets' default is 10).
CLOSE_TIMEOUT_S = 2.0
#: Keepalive, as websockets' defaults: ping after 20 s of silence, give up 20 s later.
PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 20.0
KEEPALIVE_REASON = "keepalive ping timeout"
#: WebSocket pings a peer may send: browsers and libraries ping every 10-30 s, so 5 a second
#: with a burst of 20 never limits a real client, while a flood of 6-byte pings (10,000 in one
#: 64 KiB read, each answered with a pong) is cut before it can delay a tick.
PING_RATE_PER_S = 5.0
PING_BURST = 20
PING_FLOOD_REASON = "too many pings"

_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")
_FIN_BINARY = 0x80 | Opcode.BINARY
_FAST_OPCODES = frozenset({0, 1, 2, 8, 9, 10})
_OPCODES = {0: Opcode.CONT, 1: Opcode.TEXT, 2: Opcode.BINARY}
_OPEN = State.OPEN
#: Headers of the frames under 126 payload bytes (a small room's snapshots, most replies),
#: built once: indexing a tuple per write instead of a call and a new ``bytes``.
_SHORT_HEADERS = tuple(bytes((_FIN_BINARY, length)) for length in range(126))


def binary_frame(payload: bytes) -> bytes:
    """One unmasked, final binary frame carrying ``payload`` (server to client)."""
    return binary_frame_header(len(payload)) + payload


def binary_frame_header(length: int) -> bytes:
    """The 2-10 byte header of an unmasked, final binary frame of ``length`` payload bytes."""
    if length < 126:
        return _SHORT_HEADERS[length]
    if length < 65536:
        return _MEDIUM.pack(_FIN_BINARY, 126, length)
    return _LONG.pack(_FIN_BINARY, 127, length)


class WebSocketEdge(asyncio.Protocol):
    """One WebSocket connection. Subclasses implement the ``on_*`` hooks."""

    def __init__(
        self,
        *,
        max_message_bytes: int,
        open_timeout_s: float = OPEN_TIMEOUT_S,
        close_timeout_s: float = CLOSE_TIMEOUT_S,
        ping_interval_s: float | None = PING_INTERVAL_S,
        ping_timeout_s: float = PING_TIMEOUT_S,
        origins: Sequence[str | None] | None = None,
    ) -> None:
        self.ws = ServerProtocol(max_size=max_message_bytes, origins=origins, logger=_ws_logger)
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        #: ``(host, port)`` of the peer, once connected.
        self.remote_address: tuple[str, int] | None = None
        #: Path and query of the upgrade request (e.g. ``/?token=...``), once upgraded.
        self.request_path: str | None = None
        self.writable = True
        self._open_timeout_s = open_timeout_s
        self._close_timeout_s = close_timeout_s
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._max_message_bytes = max_message_bytes
        # Longest read data_received takes as one small frame: 6 header bytes + <= 125.
        self._single_frame_max = 6 + min(125, max_message_bytes)
        self._fragments: list[bytes] = []
        self._fragment_size = 0
        self._fragment_text = False
        # Fast path (see _receive_frames): on once the upgrade is done at a frame boundary.
        self._fast = False
        self._fast_pending = False
        self._rx = b""
        self._pings = TokenBucket(PING_RATE_PER_S, PING_BURST, time.monotonic)
        # Keepalive: the loop time something was last heard, as of the last check; _heard
        # says something arrived since (cheaper per read than a clock call).
        self._last_received = 0.0
        self._heard = False
        self._timer: asyncio.TimerHandle | None = None  # open deadline, then keepalive
        self._close_timer: asyncio.TimerHandle | None = None
        self._lost = False

    # ------------------------------------------------------------------ hooks to override

    def process_request(self, request: Request) -> Response | None:
        """Answer the upgrade request yourself (a refusal), or None to accept it."""
        return None

    def on_open(self) -> None:
        """The WebSocket is open (``request_path`` is set)."""

    def on_message(self, data: bytes | str) -> None:
        """One complete message: ``bytes`` (binary) or ``str`` (text, undecoded as latin-1)."""

    def on_writable(self) -> None:
        """The transport drained everything written (after a stall)."""

    def on_closed(self) -> None:
        """The TCP connection is gone (called once, also when the upgrade never happened)."""

    # ------------------------------------------------------------------ for subclasses

    @property
    def is_open(self) -> bool:
        return self.ws.state is State.OPEN

    def write_message(self, message: bytes) -> int:
        """Write one binary message now; returns its length (0 once not open: dropped)."""
        return self.write_message_parts(message, b"")

    def write_message_parts(self, head: bytes, tail: bytes) -> int:
        """Write the binary message ``head + tail`` now, framed and joined once (a big
        ``tail``, e.g. a snapshot payload, is copied once); its length (0 once not open)."""
        if self.ws.state is not _OPEN:
            return 0
        length = len(head) + len(tail)
        self.transport.write(b"".join((binary_frame_header(length), head, tail)))  # type: ignore[union-attr]
        return length

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (idempotent); the close deadline starts now."""
        ws = self.ws
        if ws.state is State.OPEN:
            ws.send_close(code, reason)
            self._flush()
            self._arm_close_deadline()
        elif ws.state is State.CONNECTING and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the TCP connection now (no closing handshake)."""
        if self.transport is not None and not self._lost:
            self.transport.abort()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        # Any unsent byte makes the connection "not writable" until the buffer drains.
        transport.set_write_buffer_limits(high=0, low=0)
        self.remote_address = transport.get_extra_info("peername")
        self._last_received = self.loop.time()
        self._timer = self.loop.call_later(self._open_timeout_s, self._open_expired)

    def data_received(self, data: bytes) -> None:
        self._heard = True  # the keepalive reads the clock, not every read
        if self._fast:
            # The usual read: exactly one whole, masked, final binary frame under 126 bytes
            # (header 0x82, 0x80 | length, 4 mask bytes), nothing buffered before it.
            size = len(data)
            if (
                6 < size <= self._single_frame_max
                and data[1] == size + 0x7A  # 0x80 | (size - 6)
                and data[0] == _FIN_BINARY
                and not self._rx
                and not self._fragments
                and self.ws.state is _OPEN
            ):
                self.on_message(apply_mask(data[6:], data[2:6]))
                return
            self._receive_frames(data)
            return
        self._receive_via_websockets(data)
        if self._fast_pending and data.endswith(b"\r\n\r\n") and not self.ws.reader.buffer:
            # The upgrade request ended this chunk and nothing follows it: websockets' reader
            # waits at a frame boundary, so the data frames can be split here from now on.
            self._fast = True
        self._fast_pending = False

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._flush()
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.ws.receive_eof()
        for timer in (self._timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._close_timer = None
        self.writable = False
        self.on_closed()

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        if not self._lost:
            self.on_writable()

    # ------------------------------------------------------------------ internals

    def _on_request(self, request: Request) -> None:
        ws = self.ws
        response = self.process_request(request)
        if response is None:
            response = ws.accept(request)
        ws.send_response(response)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if ws.state is State.OPEN:
            self.request_path = request.path
            self._fast_pending = True
            if self._ping_interval_s:
                self._timer = self.loop.call_later(self._ping_interval_s, self._keepalive)
            self._flush()  # the 101 goes before anything on_open writes
            self.on_open()

    def _receive_via_websockets(self, data: bytes) -> None:
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if type(event) is Frame:
                opcode = event.opcode
                if opcode is Opcode.BINARY or opcode is Opcode.TEXT or opcode is Opcode.CONT:
                    self._on_data_frame(opcode, event.fin, event.data)
            elif isinstance(event, Request):
                self._on_request(event)
        self._flush()
        if ws.close_expected() and self._close_timer is None:
            self._arm_close_deadline()

    def _receive_frames(self, data: bytes) -> None:
        """Split data frames here; hand control frames and anything odd to websockets.

        Only ever entered at a frame boundary of websockets' reader, and websockets is only
        ever fed whole frames from here (or, when leaving, everything that is left), so its
        parser stays at a frame boundary and keeps every control-frame and error rule.
        """
        buf = self._rx + data if self._rx else data
        end = len(buf)
        pos = 0
        ws = self.ws
        short_max = self._single_frame_max + 0x7A  # 0x80 | the longest small payload
        while end - pos >= 2:
            head1, head2 = buf[pos], buf[pos + 1]
            if (
                head1 == _FIN_BINARY
                and 0x80 < head2 <= short_max
                and not self._fragments
                and ws.state is _OPEN
            ):
                # The usual frame (several in one read when the loop was busy): a whole
                # masked binary message of 1-125 bytes.
                size = head2 - 0x7A  # 6 header bytes + the length
                if end - pos < size:
                    self._rx = buf[pos:]
                    return
                self.on_message(apply_mask(buf[pos + 6 : pos + size], buf[pos + 2 : pos + 6]))
                pos += size
                continue
            opcode = head1 & 0x0F
            if head1 & 0x70 or not head2 & 0x80 or opcode not in _FAST_OPCODES:
                break  # rsv bits, unmasked or reserved opcode: websockets fails it
            length = head2 & 0x7F
            header = 6
            if length == 126:
                if end - pos < 4:
                    self._rx = buf[pos:]
                    return
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                header = 8
            elif length == 127:
                if end - pos < 10:
                    self._rx = buf[pos:]
                    return
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                header = 14
            if opcode < 8 and length > self._max_message_bytes - self._fragment_size:
                if self._fragments:  # websockets does not know our fragments: our rule
                    self._fail(1009, "message too big")
                    return
                break  # one frame too big: websockets closes 1009
            size = header + length
            if end - pos < size:
                self._rx = buf[pos:]
                return
            if opcode >= 8:  # ping, pong, close: websockets answers them
                if opcode == 9 and not self._pings.try_take():
                    self._fail(1008, PING_FLOOD_REASON)  # each ping costs a parse and a write
                    return
                self._receive_via_websockets(buf[pos : pos + size])
                if ws.close_rcvd is not None or ws.state is State.CLOSED:
                    pos += size  # the closing handshake is done: websockets discards the rest
                    break  # (only a control frame can finish it)
            elif ws.state is State.OPEN:
                mask = buf[pos + header - 4 : pos + header]
                payload = apply_mask(buf[pos + header : pos + size], mask)
                if head1 == _FIN_BINARY and not self._fragments:
                    self.on_message(payload)  # the usual frame: one whole binary message
                else:
                    self._on_data_frame(_OPCODES[opcode], bool(head1 & 0x80), payload)
            # else: our close frame is out; data the peer sent before reading it is dropped
            # unread (a kicked flooder costs a header read per frame, not a parse)
            pos += size
        else:
            self._rx = buf[pos:]  # under two bytes of the next frame, or nothing
            return
        self._leave_fast_path(buf[pos:])

    def _leave_fast_path(self, rest: bytes) -> None:
        self._fast = False
        self._rx = b""
        if rest:
            self._receive_via_websockets(rest)

    def _on_data_frame(self, opcode: Opcode, fin: bool, data: bytes) -> None:
        if opcode is Opcode.CONT:
            if not self._fragments:
                self._fail(1002, "unexpected continuation frame")
                return
            self._fragments.append(data)
            self._fragment_size += len(data)
            if fin:
                message = b"".join(self._fragments)
                self._fragments = []
                self._fragment_size = 0
                self.on_message(message.decode("latin-1") if self._fragment_text else message)
            return
        if self._fragments:
            self._fail(1002, "expected a continuation frame")
            return
        if fin:
            self.on_message(data if opcode is Opcode.BINARY else data.decode("latin-1"))
            return
        self._fragments = [data]
        self._fragment_size = len(data)
        self._fragment_text = opcode is Opcode.TEXT

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection as websockets' parser would (close frame, then TCP close)."""
        self._fragments = []
        self._fragment_size = 0
        self._fast = False
        self._rx = b""
        if self.ws.state is State.OPEN:
            self.ws.fail(code, reason)
            self._flush()
            self._arm_close_deadline()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None or self._lost:
            return
        for data in self.ws.data_to_send():
            if data is not SEND_EOF and data:
                transport.write(data)
            elif transport.can_write_eof():  # half-close: the peer closes its side
                try:
                    transport.write_eof()
                except (OSError, RuntimeError):  # already gone (uvloop raises RuntimeError)
                    transport.abort()
            else:  # TLS cannot half-close
                transport.close()

    def _arm_close_deadline(self) -> None:
        if self._close_timer is None and not self._lost:
            self._close_timer = self.loop.call_later(self._close_timeout_s, self._close_expired)

    def _close_expired(self) -> None:
        self._close_timer = None
        if self.transport is not None:
            self.transport.abort()

    def _open_expired(self) -> None:
        self._timer = None
        if self.ws.state is State.CONNECTING and self.transport is not None:
            self.transport.abort()

    def _keepalive(self) -> None:
        self._timer = None
        if self.ws.state is not State.OPEN:
            return
        interval = self._ping_interval_s or PING_INTERVAL_S
        now = self.loop.time()
        if self._heard:
            # Heard since the last check: silence counts from now. Checks come every
            # min(interval, timeout), so a ping still follows interval..interval+period of
            # silence and the failure interval+timeout..+period, as with a clock per read.
            self._heard = False
            self._last_received = now
        silent_s = now - self._last_received
        if silent_s >= interval + self._ping_timeout_s:
            self.ws.fail(1011, KEEPALIVE_REASON)
            self._flush()
            self._arm_close_deadline()
            log.info("%s: %s", self.remote_address, KEEPALIVE_REASON)
            return
        if silent_s >= interval:
            self.ws.send_ping(b"")
            self._flush()
        self._timer = self.loop.call_later(min(interval, self._ping_timeout_s), self._keepalive)
