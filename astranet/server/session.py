"""The asyncio shell of one client connection: websockets <-> the sans-I/O ServerConnection.

Two coroutines per connection and no clock of their own:

* the *reader* awaits ``ws.recv()``, feeds :class:`~astranet.net.ServerConnection`, and hands
  each validated message to the :class:`~astranet.server.app.GameServer` (matchmaking, input
  queueing, acks, pings);
* the *writer* sleeps on an event, then writes whatever the connection queued, plus the newest
  snapshot the room offered. Snapshots are offered by the room's tick without blocking; if the
  client's socket is slow, an unsent snapshot is replaced by the next one (safe: every
  snapshot is a delta against an *acked* base, never against a skipped one), so one slow
  client costs the tick nothing and never grows a queue.

The tick loop is the only clock (one for all rooms); this module only awaits I/O, plus one
handshake deadline (a connection that never says Hello is closed 1008).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection as WebSocket
from websockets.exceptions import ConnectionClosed as WsConnectionClosed

from astranet.errors import InvalidState, LocalProtocolError
from astranet.net import ServerConnection, ServerPhase
from astranet.net.messages import ClientMessage, Hello, ServerMessage, Snapshot
from astranet.replication import EncodedSnapshot

if TYPE_CHECKING:
    from astranet.server.app import GameServer
    from astranet.server.room import Player, Room

__all__ = ["Session"]

log = logging.getLogger(__name__)

# Close reasons that are not protocol errors (they come from the server, not the client).
HANDSHAKE_TIMEOUT_REASON = "handshake timeout: no Hello received"
TAKEOVER_REASON = "session resumed by another connection"
SHUTDOWN_REASON = "server shutting down"
# Upper bound on draining a closing socket; websockets' own close_timeout (set by the
# server, CLOSE_TIMEOUT_S in app.py) normally ends it first.
CLOSE_DRAIN_TIMEOUT_S = 5.0


class Session:
    """One WebSocket client: protocol state, and (once joined) its room and player."""

    def __init__(self, server: GameServer, ws: WebSocket) -> None:
        self.server = server
        self.ws = ws
        config = server.config
        self.conn = ServerConnection(
            sig_failure_policy=config.sig_failure_policy,
            max_message_bytes=config.max_message_bytes,
            schema_fingerprint=server.game.schema.fingerprint,
        )
        self.room: Room | None = None
        self.player: Player | None = None
        self._pending_snapshot: Snapshot | None = None
        self._wake = asyncio.Event()
        self.closed = asyncio.Event()  # set once the socket is done
        self.ended = asyncio.Event()  # set after the server forgot this session (all counted)
        self._seen = (0, 0)  # (rate_limited, malformed) already counted in metrics

    @property
    def peer(self) -> str:
        address = self.ws.remote_address
        return f"{address[0]}:{address[1]}" if address else "?"

    # -- called by the room's tick (synchronous, must not block) ---------------------------

    def offer_snapshot(self, snapshot: EncodedSnapshot, last_input_seq: int | None) -> None:
        try:
            message = Snapshot(
                snapshot.id,
                snapshot.server_tick,
                snapshot.base_id,
                snapshot.compressed,
                snapshot.payload,
                last_input_seq,
            )
        except LocalProtocolError as exc:  # payload over the message limit: a game problem
            self.server.note_oversized_snapshot(self, exc)
            return
        if self._pending_snapshot is not None:
            self.server.metrics.snapshots_skipped.inc()
        self._pending_snapshot = message
        self._wake.set()

    # -- called by the server --------------------------------------------------------------

    def send(self, message: ServerMessage, **kwargs: int | None) -> None:
        """Queue a reply (the writer sends it at once)."""
        self.conn.send(message, **kwargs)
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        """Decide to close; the writer flushes what is queued and closes the socket."""
        self.conn.fail(code, reason)
        self._wake.set()

    # -- the two coroutines ----------------------------------------------------------------

    async def run(self) -> None:
        """Serve this connection until it closes (the websockets handler awaits this)."""
        writer = asyncio.create_task(self._write_loop(), name=f"astranet-writer-{self.peer}")
        try:
            await self._read_loop()
        finally:
            self.closed.set()
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self.server.session_ended(self)
            self.ended.set()

    async def _read_loop(self) -> None:
        conn = self.conn
        loop = asyncio.get_running_loop()
        hello_deadline = loop.time() + self.server.config.handshake_timeout
        while conn.close_expected() is None:
            try:
                if conn.phase is ServerPhase.AWAIT_HELLO:
                    async with asyncio.timeout_at(hello_deadline):
                        data = await self.ws.recv()
                else:
                    data = await self.ws.recv()
            except TimeoutError:
                # Counted once, by the writer's note_close (kick label handshake_timeout).
                self.close(1008, HANDSHAKE_TIMEOUT_REASON)
                break
            except WsConnectionClosed:
                break
            self.server.metrics.bytes_received.inc(len(data))
            conn.receive_data(data)
            for message in conn.messages_received():
                self._handle(message)
            self._count_refusals()
            self._wake.set()
        # Give the writer the chance to send the close frame (or see the socket is gone).
        await self._closed_or_gone()

    async def _closed_or_gone(self) -> None:
        if self.conn.close_expected() is None:
            return  # the peer went away: nothing left to send
        # Keep reading (and discarding) until the socket is closed. websockets stops reading
        # from the transport while undelivered messages queue up (max_queue), so a client
        # that flooded us before our close frame reached it would leave its close reply stuck
        # behind its own flood: both sides then wait out the close timeout.
        with contextlib.suppress(WsConnectionClosed, TimeoutError):
            async with asyncio.timeout(CLOSE_DRAIN_TIMEOUT_S):
                while True:
                    await self.ws.recv()

    def _handle(self, message: ClientMessage) -> None:
        self.server.metrics.count_message(message.TYPE)
        if isinstance(message, Hello):
            return  # answered by the protocol core; the handshake deadline no longer applies
        try:
            self.server.handle(self, message)
        except InvalidState:
            # The connection decided to close while we were replying; the close wins.
            log.debug("%s: reply after close decision dropped", self.peer)

    def _count_refusals(self) -> None:
        stats = self.conn.stats
        rate_limited, malformed = self._seen
        if stats.rate_limited > rate_limited:
            self.server.metrics.rate_limited_messages.inc(stats.rate_limited - rate_limited)
        if stats.malformed > malformed:
            self.server.metrics.malformed_messages.inc(stats.malformed - malformed)
        self._seen = (stats.rate_limited, stats.malformed)

    async def _write_loop(self) -> None:
        conn, ws, metrics = self.conn, self.ws, self.server.metrics
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                snapshot, self._pending_snapshot = self._pending_snapshot, None
                if snapshot is not None and conn.close_expected() is None:
                    try:
                        conn.send(snapshot)
                        metrics.snapshot_bytes.inc(len(snapshot.payload))
                    except InvalidState:
                        pass  # not in a room any more (closing): drop it
                for data in conn.data_to_send():
                    await ws.send(data)
                    metrics.bytes_sent.inc(len(data))
                close = conn.close_expected()
                if close is not None:
                    self.server.note_close(self, *close)
                    await ws.close(*close)
                    return
                if self.closed.is_set():
                    return
        except WsConnectionClosed:
            return
