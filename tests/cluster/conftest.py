"""Fixtures for cluster tests: a real redis-server on a free port, and directories on it.

``redis_server`` (session-scoped, shared, flushed per test by ``redis_url``) and
``private_redis`` (function-scoped: a test that stops or restarts Redis gets its own).
Other teams' tests (failover) may import these fixtures with
``from tests.cluster.conftest import *`` in their own conftest, or live under tests/cluster/.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from astranet.cluster import ClusterTimings, RoomDirectory
from astranet.server.app import GameServer
from astranet.server.cli import cluster_backend
from astranet.server.config import parse_config
from astranet.testing.server import TestServer
from astranet.tools.redisproc import RedisProcess, redis_server_binary

if redis_server_binary() is None:  # make test must run these: .ci/run installs redis-server
    pytest.fail("redis-server is not installed: apt-get install redis-server", pytrace=False)

#: Short leases so liveness tests finish in seconds (the defaults' arithmetic is tested too).
FAST_TIMINGS = ClusterTimings(
    heartbeat_s=0.2, lease_s=1.0, reap_s=0.2, room_ttl_s=1.5, redis_timeout_s=0.5
)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    with RedisProcess() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> str:
    """The shared server's URL, with its data wiped before the test."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    """A redis-server of this test's own (to stop, kill or restart)."""
    with RedisProcess() as server:
        yield server


@pytest.fixture
def namespace() -> str:
    return "t" + secrets.token_hex(4)


@pytest.fixture
async def make_directory(redis_url: str, namespace: str) -> AsyncIterator[object]:
    """``await make_directory(node_id, regions=..., url=...)`` -> a connected RoomDirectory."""
    made: list[RoomDirectory] = []

    async def make(
        node_id: str,
        regions: tuple[str, ...] = ("us-east",),
        url: str | None = None,
        timings: ClusterTimings = FAST_TIMINGS,
        **kwargs: object,
    ) -> RoomDirectory:
        directory = await RoomDirectory.connect(
            redis_url,
            node_id,
            url or f"ws://{node_id}.invalid:8788",
            regions,
            namespace=namespace,
            timings=timings,
            **kwargs,
        )
        made.append(directory)
        return directory

    yield make
    for directory in made:
        await directory.close()


# --- in-process cluster nodes ----------------------------------------------------------------

FAST_FLAGS = ("--cluster-heartbeat", "0.2", "--node-lease", "1.0")


class ClusterNode(TestServer):
    """A TestServer in cluster mode (the Redis matchmaking backend from its flags)."""

    __test__ = False

    async def start(self) -> ClusterNode:
        defaults = ["--host", "127.0.0.1", "--ws-port", "0", "--http-port", "0"]
        config = parse_config([*defaults, *self.flags], {})
        self.server = GameServer(
            config, self.game, persistence=self.persistence, backend=cluster_backend(config)
        )
        await self.server.start()
        return self


@pytest.fixture
async def start_node(redis_url: str, namespace: str) -> AsyncIterator[object]:
    """``node = await start_node(*flags, redis=url)``: an in-process node in cluster mode
    (dots game, port 0, short leases), a :class:`ClusterNode`."""
    started: list[ClusterNode] = []

    async def start(*flags: str, redis: str | None = None) -> ClusterNode:
        argv = ["--game", "astranet.examples.dots:game", "--redis", redis or redis_url]
        node = ClusterNode(
            "astranet.examples.dots:game",
            *argv,
            "--redis-namespace",
            namespace,
            *FAST_FLAGS,
            *flags,
        )
        started.append(node)
        return await node.start()

    yield start
    for node in started:
        await node.close()


@pytest.fixture
async def serve_embedded() -> AsyncIterator[object]:
    """A server without --redis (the embedded default)."""
    async with TestServer("astranet.examples.dots:game") as server:
        yield server
