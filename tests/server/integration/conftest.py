"""Fixtures for end-to-end server tests: an in-process GameServer and a real WebSocket client.

Everything runs on 127.0.0.1 with port 0. ``serve`` starts a :class:`GameServer` with extra
flags (and optionally another game) and shuts it down after the test; :class:`WireClient` is a
real ``websockets`` client that speaks astranet messages (``astranet.net.messages``) and signs
inputs like any client must. Waits are on messages and closes, each bounded by
``RECV_TIMEOUT_S`` so a missing message fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from astranet.ecs import Schema
from astranet.game import Game, load_game
from astranet.net.messages import (
    Ack,
    FindOrCreate,
    Hello,
    HelloAck,
    InputFrame,
    JoinAccepted,
    MatchResult,
    Message,
    Snapshot,
    decode_server_message,
    encode,
)
from astranet.net.signing import sign
from astranet.replication import Replica
from astranet.server.app import GameServer
from astranet.server.config import parse_config

# A reply the server owes "at once" (Pong, HelloAck, an error) arrives in well under this on
# loopback; it only bounds a test that would otherwise hang on a missing message.
RECV_TIMEOUT_S = 5.0

M = TypeVar("M", bound=Message)


class WireClient:
    """One real WebSocket client of the server, speaking decoded astranet messages."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.joined: JoinAccepted | None = None
        self.match: MatchResult | None = None  # the MatchResult of join() (party_token, A4)
        self.seq = 0
        self.snapshots: list[Snapshot] = []  # every Snapshot seen by recv()

    @classmethod
    async def open(cls, url: str, *, tls: ssl.SSLContext | None = None) -> WireClient:
        ws = await connect(
            url, ssl=tls, compression=None, open_timeout=RECV_TIMEOUT_S, max_size=None
        )
        return cls(ws)

    async def send(self, message: Message) -> None:
        await self.ws.send(encode(message))

    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def recv(self, within_s: float = RECV_TIMEOUT_S) -> Message:
        async with asyncio.timeout(within_s):
            data = await self.ws.recv()
        message = decode_server_message(data, max_bytes=1 << 20)
        if isinstance(message, Snapshot):
            self.snapshots.append(message)
        return message

    async def expect(self, kind: type[M], within_s: float = RECV_TIMEOUT_S) -> M:
        """The next message that is not a Snapshot (unless a Snapshot is asked for)."""
        async with asyncio.timeout(within_s):
            while True:
                message = await self.recv(within_s)
                if isinstance(message, kind):
                    return message
                if isinstance(message, Snapshot):
                    continue
                raise AssertionError(f"expected {kind.__name__}, got {message!r}")

    async def closed(self, within_s: float = RECV_TIMEOUT_S) -> tuple[int | None, str | None]:
        """Drain until the server closes; returns (close code, reason)."""
        async with asyncio.timeout(within_s):
            try:
                while True:
                    await self.recv(within_s)
            except ConnectionClosed:
                pass
        return self.ws.close_code, self.ws.close_reason

    async def hello(self) -> None:
        await self.send(Hello(1))
        await self.expect(HelloAck)

    async def join(
        self, region: str = "us-east", game_mode: str = "coop", party_size: int = 1
    ) -> JoinAccepted:
        await self.hello()
        await self.send(FindOrCreate(region, game_mode, party_size))
        result = await self.expect(MatchResult)
        joined = await self.expect(JoinAccepted)
        assert joined.room_id == result.room_id
        self.joined, self.match = joined, result
        return joined

    def input_frame(self, blob: bytes, *, seq: int | None = None) -> InputFrame:
        """A correctly signed frame with the next seq (or the given one)."""
        assert self.joined is not None, "join first"
        if seq is None:
            self.seq += 1
            seq = self.seq
        tick_ms = time.time_ns() // 1_000_000
        return InputFrame(seq, tick_ms, blob, sign(self.joined.session_key, seq, tick_ms, blob))

    async def send_input(self, blob: bytes, *, seq: int | None = None) -> InputFrame:
        frame = self.input_frame(blob, seq=seq)
        await self.send(frame)
        return frame

    async def ack(self, snapshot_id: int) -> None:
        await self.send(Ack(snapshot_id))

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

    async def close(self) -> None:
        await self.ws.close()


def fetch(url: str) -> tuple[int, str, bytes]:
    """A blocking HTTP GET (call through asyncio.to_thread); errors are replies."""
    try:
        with urllib.request.urlopen(url, timeout=RECV_TIMEOUT_S) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


class Running:
    """A started in-process server plus helpers to reach it."""

    def __init__(self, server: GameServer) -> None:
        self.server = server

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.ws_port}"

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.http_port}{path}"

    async def get(self, path: str) -> tuple[int, str, bytes]:
        return await asyncio.to_thread(fetch, self.http(path))

    async def rooms(self) -> list[dict[str, Any]]:
        status, _, body = await self.get("/rooms")
        assert status == 200
        return json.loads(body)

    async def metrics(self) -> str:
        status, _, body = await self.get("/metrics")
        assert status == 200
        return body.decode()

    async def ended(self, *clients: WireClient) -> None:
        """Wait until the server has finished with these clients' connections (bounded).

        A client sees the close frame before the server's handler has finished its
        bookkeeping (seat hold, kick counters); tests that check those await this.
        """
        ports = {client.ws.local_address[1] for client in clients}
        sessions = [s for s in self.server.sessions if s.remote_address[1] in ports]
        async with asyncio.timeout(RECV_TIMEOUT_S):
            for session in sessions:
                await session.ended.wait()

    async def client(self) -> WireClient:
        return await WireClient.open(self.url)

    async def joined_client(self, **kwargs: Any) -> WireClient:
        client = await self.client()
        await client.join(**kwargs)
        return client


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0.0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    key = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        if sample == key:
            return float(value)
    return 0.0


StartServer = Callable[..., Awaitable[Running]]


@pytest.fixture
async def serve() -> AsyncIterator[StartServer]:
    """``running = await serve("--sig-failure-policy", "warn", game=...)``; shut down after."""
    started: list[GameServer] = []

    async def start(*flags: str, game: Game | str = "astranet.examples.dots:game") -> Running:
        config = parse_config(
            ["--game", "astranet.examples.dots:game", "--ws-port", "0", "--http-port", "0", *flags],
            {},
        )
        loaded = load_game(game) if isinstance(game, str) else game
        server = GameServer(config, loaded)
        await server.start()
        started.append(server)
        return Running(server)

    yield start
    for server in started:
        await server.shutdown()


@pytest.fixture
async def running(serve: StartServer) -> Running:
    """A default server (dots game, kick policy)."""
    return await serve()


class DecodedView:
    """A client's decoded copy of its room (astranet's Replica) fed from a WireClient."""

    def __init__(self, schema: Schema) -> None:
        self.replica = Replica(schema)

    def apply(self, snapshot: Snapshot) -> None:
        self.replica.apply(
            snapshot.id,
            snapshot.base_id,
            snapshot.payload,
            snapshot.compressed,
            snapshot.server_tick,
        )

    def position(self, net_id: int) -> np.ndarray:
        store = self.replica.store
        row = store.rows([net_id])
        return np.array(store["Body.pos"][row][0], dtype=np.float64)


async def position_after(
    client: WireClient,
    view: DecodedView,
    net_id: int,
    predicate: Callable[[Snapshot], bool] = lambda s: True,
) -> np.ndarray:
    """Decode snapshots (never acking: each is full) until ``predicate``; the avatar's pos."""
    snapshot = await client.snapshot_where(predicate)
    view.apply(snapshot)
    return view.position(net_id)
