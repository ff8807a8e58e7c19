"""TestServer: serve a Game in-process on 127.0.0.1 and connect clients to it (pytest-friendly).

bevy_replicon's ``test_app`` is the model: the real server and real clients in one process,
so a game's own tests check what players see without mocks::

    async with TestServer(game) as server:           # a real GameServer, free ports
        alice, bob = await server.join(2)             # two TestClients in one room
        frame = await alice.send_input(encode_input(1, 0))
        await alice.applied(frame.seq)                # a snapshot shows the input applied
        assert alice.value("Body.pos")[0] > 0         # the server's state, as alice decoded it
        await server.run_for(0.5)                     # everyone keeps reading for 0.5 s
        assert len(bob.snapshots) >= 10

``TestServer(game, link=LinkProfile(latency_ms=50))`` puts a LinkConditioner between clients
and server (``url`` is then the conditioner's). ``flags`` are ``astranet-server`` flags.
Shutdown (``close``/the ``async with`` exit) closes every client, the conditioner and the
server (WIRE rule 8). Waits are bounded (RECV_TIMEOUT_S per message, explicit timeouts
elsewhere); nothing sleeps to synchronise except ``run_for`` (whose point is the duration).

Limits: one process; the server ticks on its real clock (30 Hz unless ``--tick-hz``).
Benchmark: none (a harness).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from websockets.exceptions import ConnectionClosed

from astranet.game import Game, load_game
from astranet.net.linkconditioner import LinkConditioner, LinkProfile
from astranet.server.app import GameServer
from astranet.server.config import parse_config
from astranet.testing.client import RECV_TIMEOUT_S, TestClient

__all__ = ["TestServer", "metric_value"]


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


def _fetch(url: str) -> tuple[int, str, bytes]:
    """A blocking HTTP GET (run through asyncio.to_thread); error statuses are replies."""
    try:
        with urllib.request.urlopen(url, timeout=RECV_TIMEOUT_S) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


class TestServer:
    """A started in-process GameServer plus helpers to reach it (see the module docstring)."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        game: Game | str = "astranet.examples.dots:game",
        *flags: str,
        link: LinkProfile | None = None,
        link_seed: int = 7,
        persistence: Any = None,
        decode: bool = True,
    ) -> None:
        """``decode``: the default for :meth:`client` (decode and ack every snapshot, as a real
        client does; False gives raw clients that never ack, so every snapshot is full)."""
        self.game = load_game(game) if isinstance(game, str) else game
        self.flags: Sequence[str] = flags
        self.link = link
        self.link_seed = link_seed
        self.persistence = persistence
        self.decode = decode
        self.server: GameServer | None = None
        self.conditioner: LinkConditioner | None = None
        self.clients: list[TestClient] = []

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> TestServer:
        defaults = ["--host", "127.0.0.1", "--ws-port", "0", "--http-port", "0"]
        config = parse_config([*defaults, *self.flags], {})
        self.server = GameServer(config, self.game, persistence=self.persistence)
        await self.server.start()
        if self.link is not None:
            assert self.server.ws_port is not None
            self.conditioner = LinkConditioner(
                "127.0.0.1", self.server.ws_port, self.link, self.link, seed=self.link_seed
            )
            await self.conditioner.start()
        return self

    async def close(self) -> None:
        """Close every client, then the conditioner, then shut the server down."""

        async def close(client: TestClient) -> None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await client.close()

        await asyncio.gather(*(close(client) for client in self.clients))
        if self.conditioner is not None:
            await self.conditioner.close()
            self.conditioner = None
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    async def __aenter__(self) -> TestServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- where -------------------------------------------------------------------------------

    @property
    def running(self) -> GameServer:
        assert self.server is not None, "start the TestServer first"
        return self.server

    @property
    def url(self) -> str:
        """Where clients connect: the link conditioner when there is one, else the server."""
        if self.conditioner is not None:
            return f"ws://127.0.0.1:{self.conditioner.port}"
        return self.server_url

    @property
    def server_url(self) -> str:
        return f"ws://127.0.0.1:{self.running.ws_port}"

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.running.http_port}{path}"

    # -- clients -----------------------------------------------------------------------------

    async def client(self, *, decode: bool | None = None, **kwargs: Any) -> TestClient:
        """A connected client (no Hello yet); ``decode``: decode and ack its snapshots."""
        if self.decode if decode is None else decode:
            kwargs.setdefault("schema", self.game.schema)
            kwargs.setdefault("auto_ack", True)
        client = TestClient(self.url, **kwargs)
        await client.connect()
        self.clients.append(client)
        return client

    async def joined_client(self, *, decode: bool | None = None, **join: Any) -> TestClient:
        """A client that joined (FindOrCreate with ``join``'s region/game_mode/party_size).

        A decoding client returns once it has decoded its first snapshot, so ``state`` and
        ``value`` already show the room (its own avatar included)."""
        client = await self.client(decode=decode)
        await client.join(**join)
        if client.replica is not None:
            await client.next_snapshot()
        return client

    async def join(
        self, count: int, *, decode: bool | None = None, **join: Any
    ) -> list[TestClient]:
        """``count`` clients that joined one after the other (one room while it has seats)."""
        return [await self.joined_client(decode=decode, **join) for _ in range(count)]

    # -- time --------------------------------------------------------------------------------

    async def run_for(self, seconds: float, *clients: TestClient) -> None:
        """Let ``seconds`` pass while ``clients`` (default: every joined one) keep reading
        (recording and decoding their snapshots, as a real client would)."""
        readers = [c for c in (clients or self.clients) if c.joined is not None]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds

        async def read(client: TestClient) -> None:
            with contextlib.suppress(TimeoutError, ConnectionClosed):
                while (left := deadline - loop.time()) > 0:
                    await client.recv(within_s=left)

        await asyncio.gather(*(read(client) for client in readers))
        if not readers:
            await asyncio.sleep(max(0.0, deadline - loop.time()))  # the duration is the point

    async def ticks(self, count: int, via: TestClient | None = None) -> None:
        """Wait until ``count`` more server ticks reached ``via`` (default: the first joined
        client) as snapshots: one snapshot per tick, so this is the event-paced 'step'."""
        client = via or next(c for c in self.clients if c.joined is not None)
        start = client.snapshots[-1].server_tick if client.snapshots else None
        while True:
            snapshot = await client.next_snapshot()
            if start is None:
                start = snapshot.server_tick - 1
            if snapshot.server_tick - start >= count:
                return

    # -- HTTP side port ----------------------------------------------------------------------

    async def get(self, path: str) -> tuple[int, str, bytes]:
        """``GET path`` on the side port: (status, content type, body)."""
        return await asyncio.to_thread(_fetch, self.http(path))

    async def rooms(self) -> list[dict[str, Any]]:
        status, _, body = await self.get("/rooms")
        assert status == 200, status
        return json.loads(body)

    async def metrics(self) -> str:
        status, _, body = await self.get("/metrics")
        assert status == 200, status
        return body.decode()

    async def metric(self, name: str, **labels: str) -> float:
        return metric_value(await self.metrics(), name, **labels)

    async def ended(self, *clients: TestClient) -> None:
        """Wait until the server has finished with these clients' connections (bounded).

        A client sees the close frame before the server's handler has finished its bookkeeping
        (seat hold, kick counters); tests that check those await this.
        """
        ports = {client.local_port for client in clients}
        sessions = [s for s in self.running.sessions if s.remote_address[1] in ports]
        async with asyncio.timeout(RECV_TIMEOUT_S):
            for session in sessions:
                await session.ended.wait()
