"""One client connection: the WebSocket edge, the sans-I/O ServerConnection, and its seat.

A :class:`Session` is the ``asyncio.Protocol`` of one socket (:class:`~.edge.WebSocketEdge`).
Every inbound message is decoded, verified (rate limit, signature, replay) and handed to the
:class:`SessionHost` synchronously inside ``data_received``; replies are written before it
returns. There is no task, future or ``await`` per connection or per message.

Snapshots: the room's tick calls :meth:`Session.offer_snapshot` as soon as that room has
stepped. The envelope of each distinct payload is built once (:class:`SnapshotEnvelopes`,
cleared every tick) and this client's ``last_input_seq`` is spliced in (map or compact
envelope, WIRE A1). When the socket has not drained its last write, the snapshot waits as
*pending* and a newer one replaces it (counted in ``snapshots_skipped``); it goes out when the
transport drains (safe: every snapshot is a delta against an *acked* base, never a skipped
one), so one slow client costs the tick nothing and never grows a queue.

Deadlines: a connection that never says Hello is closed 1008 after ``handshake_timeout``;
the upgrade, keepalive and close deadlines are the edge's.

The host is a :class:`SessionHost` (the game server implements it); this module never names
the server class. Benchmark: benchmarks/protocol.py ("edge InputFrame path", "snapshot send
per client").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from astranet.errors import InvalidState, LocalProtocolError, ProtocolError
from astranet.net import ServerConnection, ServerPhase
from astranet.net.envelope import SnapshotEnvelope
from astranet.net.messages import ClientMessage, Events, Hello, ServerMessage
from astranet.replication import EncodedSnapshot
from astranet.server.edge import WebSocketEdge

if TYPE_CHECKING:
    from astranet.game import Game
    from astranet.server.config import ServerConfig
    from astranet.server.metrics import ServerMetrics
    from astranet.server.room import Player, Room

__all__ = ["Session", "SessionHost", "SnapshotEnvelopes"]

log = logging.getLogger(__name__)

_IN_ROOM = ServerPhase.IN_ROOM

# Close reasons that are not protocol errors (they come from the server, not the client).
HANDSHAKE_TIMEOUT_REASON = "handshake timeout: no Hello received"
TAKEOVER_REASON = "session resumed by another connection"
SHUTDOWN_REASON = "server shutting down"


class SnapshotEnvelopes:
    """This tick's envelopes, one per distinct payload the rooms handed out."""

    __slots__ = ("_by_id", "_last", "_last_envelope")

    def __init__(self) -> None:
        # id(snapshot) -> (snapshot, envelope); the snapshot is kept so its id is not reused.
        self._by_id: dict[int, tuple[EncodedSnapshot, SnapshotEnvelope]] = {}
        # The last snapshot asked for and its envelope: a room hands one payload to its
        # clients one after another, so most calls are this identity test alone.
        self._last: EncodedSnapshot | None = None
        self._last_envelope: SnapshotEnvelope | None = None

    def get(self, snapshot: EncodedSnapshot) -> SnapshotEnvelope:
        """The envelope of ``snapshot``; raises ``LocalProtocolError`` if it cannot fit."""
        if snapshot is self._last:
            return self._last_envelope  # type: ignore[return-value]
        cached = self._by_id.get(id(snapshot))
        if cached is not None and cached[0] is snapshot:
            envelope = cached[1]
        else:
            envelope = SnapshotEnvelope(
                snapshot.id,
                snapshot.server_tick,
                snapshot.base_id,
                snapshot.compressed,
                snapshot.payload,
            )
            self._by_id[id(snapshot)] = (snapshot, envelope)
        self._last, self._last_envelope = snapshot, envelope
        return envelope

    def clear(self) -> None:
        """Forget last tick's envelopes (call once per tick, before the rooms step)."""
        self._by_id.clear()
        self._last = self._last_envelope = None


class SessionHost(Protocol):
    """What a session needs from the server it belongs to."""

    config: ServerConfig
    game: Game
    metrics: ServerMetrics
    #: One cache for the server's life: each session reads it once, when it is made.
    envelopes: SnapshotEnvelopes
    #: Origin header values the upgrade accepts (websockets' ``origins=``); None = any.
    ws_origins: Sequence[str | None] | None
    #: Hello's identity check (WIRE A4), handed to ServerConnection; None = anonymous.
    authenticate: Callable[[str | None], object] | None

    def admit_connection(self, session: Session) -> bool:
        """A TCP connection arrived (nothing parsed yet): False drops it at once (A4)."""

    def connection_lost_unopened(self, session: Session) -> None:
        """A connection ``admit_connection`` saw went away before its WebSocket opened."""

    def session_opened(self, session: Session) -> None:
        """The WebSocket is open; the host may refuse it with ``session.close(1013, ...)``."""

    def handle(self, session: Session, message: ClientMessage) -> None:
        """Act on one validated message (synchronously; may ``session.send`` replies)."""

    def note_close(self, session: Session, code: int, reason: str) -> None:
        """The server decided to close this session with ``code`` (count kicks here)."""

    def note_oversized_snapshot(self, session: Session, exc: Exception) -> None: ...

    def session_ended(self, session: Session) -> None:
        """The socket is gone (every session that was opened ends exactly once)."""


class Session(WebSocketEdge):
    """One WebSocket client: protocol state, and (once joined) its room and player."""

    def __init__(self, host: SessionHost) -> None:
        config = host.config
        super().__init__(max_message_bytes=config.max_message_bytes, origins=host.ws_origins)
        self.host = host
        self.metrics = host.metrics
        self._envelopes = host.envelopes
        self.conn = ServerConnection(
            sig_failure_policy=config.sig_failure_policy,
            max_message_bytes=config.max_message_bytes,
            schema_fingerprint=host.game.schema.fingerprint,
            authenticate=host.authenticate,  # None: anonymous (WIRE A4)
        )
        self.room: Room | None = None
        self.player: Player | None = None
        self._pending: tuple[SnapshotEnvelope, int | None] | None = None
        self._hello_timer: asyncio.TimerHandle | None = None
        self._opened = False
        self.closed = asyncio.Event()  # set once the socket is done
        self.ended = asyncio.Event()  # set after the host forgot this session (all counted)
        self._seen = (0, 0)  # (rate_limited, malformed) already counted in metrics
        #: Whether this client asked for game events in its Hello (``conn.events``; a plain
        #: attribute, read per tick by the room).
        self.wants_events = False

    @property
    def peer(self) -> str:
        address = self.remote_address
        return f"{address[0]}:{address[1]}" if address else "?"

    # -- called by the room's tick (synchronous, must not block) ---------------------------

    def offer_snapshot(self, snapshot: EncodedSnapshot, last_input_seq: int | None) -> None:
        # Once per client per tick: conn.can_send_snapshot and host.envelopes without their
        # property calls (the host's cache object lives as long as the server).
        if self.conn.phase is not _IN_ROOM:
            return
        try:
            envelope = self._envelopes.get(snapshot)
        except LocalProtocolError as exc:  # payload over the message limit: a game problem
            self.host.note_oversized_snapshot(self, exc)
            return
        if not self.writable:
            if self._pending is not None:
                self.metrics.snapshots_skipped += 1
            self._pending = (envelope, last_input_seq)
            return
        self._write_snapshot(envelope, last_input_seq)

    def _write_snapshot(self, envelope: SnapshotEnvelope, last_input_seq: int | None) -> None:
        # Envelope head and payload framed and joined once: the payload is copied once.
        conn = self.conn
        head, tail = envelope.parts(last_input_seq, conn.compact)
        sent = self.write_message_parts(head, tail)
        if sent:
            metrics = self.metrics
            metrics.bytes_sent += sent
            metrics.snapshot_bytes += len(envelope.payload)
            conn.count_sent(sent)

    def on_writable(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and self.conn.can_send_snapshot:
            self._write_snapshot(*pending)

    # -- called by the host ----------------------------------------------------------------

    def offer_events(self, message: Events) -> None:
        """Write one ``Events`` message now (before this tick's snapshot; never dropped while
        the socket is open: the transport buffers it)."""
        try:
            self.send(message)
        except InvalidState:  # closing: the outbox keeps them for a Resume
            return

    def send(self, message: ServerMessage, **kwargs: int | None) -> None:
        """Send a reply now (raises ``InvalidState`` if the protocol forbids it)."""
        self.conn.send(message, **kwargs)
        self._flush_conn()

    def send_error(self, exc: ProtocolError) -> None:
        """Reply to a refused request now (``conn.send_error``; it may close)."""
        self.conn.send_error(exc)
        self._flush_conn()

    def close(self, code: int, reason: str) -> None:
        """Decide to close: what is queued goes out, then the close frame."""
        self.conn.fail(code, reason)
        self._flush_conn()

    # -- the edge's hooks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.host.admit_connection(self):
            # Over the per-address connection rate: dropped before any parsing, so a burst
            # of new sockets from one address costs the loop microseconds, not a handshake
            # each (WIRE A4: clients already connected keep their snapshot rate).
            self.abort()

    def on_open(self) -> None:
        self._opened = True
        self._hello_timer = self.loop.call_later(
            self.host.config.handshake_timeout, self._hello_expired
        )
        self.host.session_opened(self)

    def on_message(self, data: bytes | str) -> None:
        conn = self.conn
        self.metrics.bytes_received += len(data)
        message = conn.receive(data)
        if message is None:  # refused or dropped: the only way the refusal counts move
            self._count_refusals()
        else:
            self._handle(message)
        if conn._writes or conn._close is not None:
            self._flush_conn()

    def on_closed(self) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
        self._pending = None
        self.closed.set()
        if self._opened:
            self.host.session_ended(self)
        else:
            self.host.connection_lost_unopened(self)
        self.ended.set()

    # -- internals -------------------------------------------------------------------------

    def _hello_expired(self) -> None:
        self._hello_timer = None
        if self.conn.phase is ServerPhase.AWAIT_HELLO:
            # Counted once, by note_close (kick label handshake_timeout).
            self.close(1008, HANDSHAKE_TIMEOUT_REASON)

    def _handle(self, message: ClientMessage) -> None:
        self.metrics.count_message(message.TYPE)
        if type(message) is Hello:
            if self._hello_timer is not None:
                self._hello_timer.cancel()
                self._hello_timer = None
            self.wants_events = self.conn.events
            return  # answered by the protocol core
        try:
            self.host.handle(self, message)
        except InvalidState:
            # The connection decided to close while we were replying; the close wins.
            log.debug("%s: reply after close decision dropped", self.peer)

    def _count_refusals(self) -> None:
        stats, metrics = self.conn.stats, self.metrics
        if (stats.rate_limited, stats.malformed) == self._seen:
            return
        rate_limited, malformed = self._seen
        metrics.rate_limited_messages += stats.rate_limited - rate_limited
        metrics.malformed_messages += stats.malformed - malformed
        self._seen = (stats.rate_limited, stats.malformed)

    def _flush_conn(self) -> None:
        """Write what the protocol queued; then close if it decided to."""
        conn = self.conn
        sent = 0
        for data in conn.data_to_send():
            sent += self.write_message(data)
        self.metrics.bytes_sent += sent
        close = conn.close_expected()
        if close is not None and self.is_open:
            self._pending = None
            self.host.note_close(self, *close)
            super().close(*close)
