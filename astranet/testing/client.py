"""TestClient: one real WebSocket client of a server, speaking decoded astranet messages.

It holds a sans-I/O :class:`~astranet.net.ClientConnection` (so ``join``/``resume`` behave as a
real client's: signed inputs, seq numbering continuing across a resume) and also lets a test
send anything it likes (``send(message)``, ``send_raw(bytes)``), to check what the server does
with bad input. Every message read is decoded and recorded (``messages``, ``snapshots``); with
a schema, snapshots are also decoded into ``replica`` (the server's state as this client sees
it) and acked, like a real client.

Waits are on messages and closes, each bounded by ``RECV_TIMEOUT_S`` (a missing message fails
the test instead of hanging it). Limits: tests only (recorded messages are kept until the test
ends). Benchmark: none.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from websockets.asyncio.client import ClientConnection as WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from astranet.ecs import ColumnStore, Schema
from astranet.net import messages as m
from astranet.net.client_conn import ClientConnection, ClientPhase
from astranet.net.messages import (
    ErrorMessage,
    HelloAck,
    JoinAccepted,
    MatchResult,
    Message,
    Pong,
    Snapshot,
)
from astranet.net.signing import sign
from astranet.replication import Replica

__all__ = ["RECV_TIMEOUT_S", "TestClient"]

# A reply the server owes "at once" (Pong, HelloAck, an error) arrives in well under this on
# loopback; generous for a loaded machine, it only bounds a test that would otherwise hang.
RECV_TIMEOUT_S = 10.0
# A closing handshake the server does not answer (it is gone, or it is flooded) must not hold a
# test for websockets' default 10 s.
CLOSE_TIMEOUT_S = 2.0
# Messages a test client decodes at most (the server's own bound is 64 KiB; tests of the
# server's size limit must still be able to read what it sends).
MAX_READ_BYTES = 1 << 20
# Messages that ``expect`` steps over on its way (they come at any time and mean nothing).
_BACKGROUND = (Snapshot, HelloAck, Pong)

M = TypeVar("M", bound=Message)


class TestClient:
    """One player's socket. ``await TestClient.open(url)``, or let a TestServer make one."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        url: str,
        conn: ClientConnection | None = None,
        *,
        schema: Schema | None = None,
        auto_ack: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.conn = conn if conn is not None else ClientConnection()
        self.tls = tls
        self.ws: WebSocket | None = None
        #: The newest JoinAccepted (the session's key and identity).
        self.joined: JoinAccepted | None = None
        #: The newest MatchResult (room id; ``party_token`` for the party, WIRE A4).
        self.match: MatchResult | None = None
        self.messages: list[Message] = []  # every message read, in order
        self.snapshots: list[Snapshot] = []
        self.errors: list[ErrorMessage] = []
        #: The server's state as this client decoded it (None without a schema).
        self.replica = Replica(schema) if schema is not None else None
        self.auto_ack = auto_ack

    @classmethod
    async def open(cls, url: str, **kwargs: object) -> TestClient:
        """Connect (no Hello yet)."""
        client = cls(url, **kwargs)  # type: ignore[arg-type]
        await client.connect()
        return client

    # -- the socket ---------------------------------------------------------------------------

    async def connect(self) -> None:
        self.ws = await connect(
            self.url,
            ssl=self.tls,
            compression=None,
            open_timeout=RECV_TIMEOUT_S,
            close_timeout=CLOSE_TIMEOUT_S,
            max_size=None,
            proxy=None,
        )

    @property
    def local_port(self) -> int:
        assert self.ws is not None
        return int(self.ws.local_address[1])

    async def send(self, message: Message) -> None:
        """Send ``message`` as is (bypassing the protocol state: any message, any phase)."""
        assert self.ws is not None, "connect first"
        await self.ws.send(m.encode(message))

    async def send_raw(self, data: bytes | str) -> None:
        assert self.ws is not None, "connect first"
        await self.ws.send(data)

    async def flush(self) -> None:
        """Send what the sans-I/O connection queued (Hello, FindOrCreate, Resume...)."""
        assert self.ws is not None, "connect first"
        for data in self.conn.data_to_send():
            await self.ws.send(data)

    async def recv(self, within_s: float = RECV_TIMEOUT_S) -> Message:
        """The next message from the server (recorded, and decoded into ``replica``)."""
        assert self.ws is not None, "connect first"
        async with asyncio.timeout(within_s):
            data = await self.ws.recv()
        message = m.decode_server_message(data, max_bytes=MAX_READ_BYTES)
        if isinstance(data, bytes):
            self.conn.receive_data(data)  # keeps identity and phase as a real client's
            self.conn.messages_received()
        self.messages.append(message)
        if isinstance(message, JoinAccepted):
            self.joined = message
        elif isinstance(message, MatchResult):
            self.match = message
        elif isinstance(message, ErrorMessage):
            self.errors.append(message)
        elif isinstance(message, Snapshot):
            self.snapshots.append(message)
            if self.replica is not None:
                self.apply(message)
                if self.auto_ack:
                    await self.ack(message.id)
        return message

    async def expect(self, kind: type[M], within_s: float = RECV_TIMEOUT_S) -> M:
        """The next message of ``kind``, stepping over snapshots, HelloAck and Pong; any other
        message fails the test (an ErrorMessage names the server's refusal)."""
        async with asyncio.timeout(within_s):
            while True:
                message = await self.recv(within_s)
                if isinstance(message, kind):
                    return message
                if isinstance(message, _BACKGROUND):
                    continue
                raise AssertionError(f"expected {kind.__name__}, got {message!r}")

    async def closed(self, within_s: float = RECV_TIMEOUT_S) -> tuple[int | None, str | None]:
        """Read (and record) until the server closes; returns (close code, reason)."""
        assert self.ws is not None
        async with asyncio.timeout(within_s):
            try:
                while True:
                    await self.recv(within_s)
            except ConnectionClosed:
                pass
        return self.ws.close_code, self.ws.close_reason

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def drop(self) -> None:
        """Abrupt disconnect: the TCP connection goes away without a closing handshake."""
        assert self.ws is not None
        self.ws.transport.abort()
        await self.ws.wait_closed()

    # -- the protocol, as a real client does it -----------------------------------------------

    async def hello(self) -> None:
        """Hello (protocol 1), then HelloAck. A second one is sent as is (a test of it)."""
        if self.conn.phase is ClientPhase.IDLE:
            self.conn.hello()
            await self.flush()
        else:
            await self.send(m.Hello(1))
        await self.expect(HelloAck)

    def _request(self, queue: Callable[[], None], raw: Message) -> Message | None:
        """Queue through the sans-I/O connection when its phase allows, else return ``raw``."""
        if self.conn.phase in (ClientPhase.AWAIT_HELLO_ACK, ClientPhase.LOBBY):
            queue()
            return None
        return raw

    async def join(
        self, region: str = "us-east", game_mode: str = "coop", party_size: int = 1
    ) -> JoinAccepted:
        """Hello + FindOrCreate; returns the JoinAccepted (also kept in ``joined``)."""
        if self.ws is None:
            await self.connect()
        await self.hello()
        raw = self._request(
            lambda: self.conn.find_or_create(region, game_mode, party_size),
            m.FindOrCreate(region, game_mode, party_size),
        )
        await (self.send(raw) if raw is not None else self.flush())
        result = await self.expect(MatchResult)
        if result.url is not None:  # A2: the room is on another node; take our seat there
            return await self.follow_redirect(result)
        joined = await self.expect(JoinAccepted)
        assert joined.room_id == result.room_id
        return joined

    async def follow_redirect(self, redirect: MatchResult) -> JoinAccepted:
        """Close this socket, connect to ``redirect.url`` and JoinRoom with its seat token."""
        assert redirect.url is not None
        if self.ws is not None:
            await self.ws.close()
        self.url = redirect.url
        self.conn.reset_transport()
        await self.connect()
        await self.hello()
        self.conn.join_room(redirect.room_id, seat_token=redirect.seat_token)
        await self.flush()
        reply = await self.expect(MatchResult)
        if reply.url is not None:
            raise AssertionError(f"redirected twice: {redirect.url} then {reply.url}")
        joined = await self.expect(JoinAccepted)
        assert joined.room_id == redirect.room_id
        return joined

    async def join_room(self, room_id: str) -> JoinAccepted:
        if self.ws is None:
            await self.connect()
        await self.hello()
        raw = self._request(lambda: self.conn.join_room(room_id), m.JoinRoom(room_id))
        await (self.send(raw) if raw is not None else self.flush())
        await self.expect(MatchResult)
        return await self.expect(JoinAccepted)

    async def resume(self, **identity: object) -> None:
        """Reconnect on a new socket and send Hello + Resume (the reply is the caller's);
        ``identity`` (room_id, player_id, resume_token) defaults to the remembered one."""
        self.conn.reset_transport()
        await self.connect()
        self.conn.hello()
        self.conn.resume(**identity)  # type: ignore[arg-type]
        await self.flush()

    @property
    def seq(self) -> int:
        """The last seq numbered (set it to number on from another value)."""
        return self.conn.next_seq - 1

    @seq.setter
    def seq(self, value: int) -> None:
        self.conn.next_seq = value + 1

    def input_frame(
        self, blob: bytes, *, seq: int | None = None, tick_ms: int | None = None
    ) -> m.InputFrame:
        """A correctly signed frame with the next seq (or the given one)."""
        assert self.joined is not None, "join first"
        if tick_ms is None:
            tick_ms = time.time_ns() // 1_000_000
        if seq is None:
            seq = self.conn.next_seq
        self.conn.next_seq = max(self.conn.next_seq, seq + 1)
        return m.InputFrame(seq, tick_ms, blob, sign(self.joined.session_key, seq, tick_ms, blob))

    async def send_input(self, blob: bytes, *, seq: int | None = None) -> m.InputFrame:
        frame = self.input_frame(blob, seq=seq)
        await self.send(frame)
        return frame

    async def send_inputs(self, blob: bytes, count: int) -> int:
        """Send ``count`` signed frames; returns the last seq."""
        seq = 0
        for _ in range(count):
            seq = (await self.send_input(blob)).seq
        return seq

    async def hold(self, blob: bytes, ticks: int) -> Snapshot:
        """Send ``blob`` once per tick for ``ticks`` ticks, as a real client does (one input
        per snapshot received; the server applies at most one per tick and drops a backlog),
        then return the snapshot that shows the last one applied."""
        frame = None
        for _ in range(ticks):
            frame = await self.send_input(blob)
            await self.next_snapshot()
        assert frame is not None, "hold for at least one tick"
        return await self.applied(frame.seq)

    async def ack(self, snapshot_id: int) -> None:
        await self.send(m.Ack(snapshot_id))

    async def find_or_create(
        self, region: str = "us-east", game_mode: str = "coop", party_size: int = 1
    ) -> None:
        """Send a FindOrCreate as is (the reply is the caller's)."""
        await self.send(m.FindOrCreate(region, game_mode, party_size))

    async def send_hello(self, protocol: int = 1) -> None:
        await self.send(m.Hello(protocol))

    # -- snapshots ----------------------------------------------------------------------------

    async def next_snapshot(self, within_s: float = RECV_TIMEOUT_S) -> Snapshot:
        return await self.expect(Snapshot, within_s)

    async def snapshot_where(
        self, predicate: Callable[[Snapshot], bool], within_s: float = RECV_TIMEOUT_S
    ) -> Snapshot:
        async with asyncio.timeout(within_s):
            while True:
                snapshot = await self.next_snapshot(within_s)
                if predicate(snapshot):
                    return snapshot

    async def applied(self, seq: int, within_s: float = RECV_TIMEOUT_S) -> Snapshot:
        """The first snapshot whose ``last_input_seq`` shows input ``seq`` applied."""
        return await self.snapshot_where(lambda s: (s.last_input_seq or 0) >= seq, within_s)

    async def snapshot_gaps(self, count: int) -> list[float]:
        """Seconds between the next ``count`` snapshots and the one before each, acking each.

        The wait for the first of them is not a gap: call it right after a snapshot arrived
        (or take the first gap as the caller's own to ignore).
        """
        loop = asyncio.get_running_loop()
        gaps: list[float] = []
        last = loop.time()
        for _ in range(count):
            snapshot = await self.next_snapshot()
            now = loop.time()
            gaps.append(now - last)
            last = now
            await self.ack(snapshot.id)
        return gaps

    def apply(self, snapshot: Snapshot) -> None:
        """Decode ``snapshot`` into ``replica`` (against the base it names)."""
        assert self.replica is not None, "a TestClient needs a schema to decode snapshots"
        self.replica.apply(
            snapshot.id,
            snapshot.base_id,
            snapshot.payload,
            snapshot.compressed,
            snapshot.server_tick,
        )

    @property
    def state(self) -> ColumnStore:
        """The decoded state (the newest applied snapshot)."""
        assert self.replica is not None, "a TestClient needs a schema to decode snapshots"
        return self.replica.store

    def value(self, field: str, net_id: int | None = None) -> np.ndarray:
        """``field`` of entity ``net_id`` (default: this player's avatar), decoded."""
        net_id = net_id if net_id is not None else self.entity
        store = self.state
        return np.array(store[field][store.rows([net_id])][0], dtype=np.float64)

    @property
    def entity(self) -> int:
        assert self.joined is not None and self.joined.entity is not None, "join first"
        return self.joined.entity
