"""Failover fixtures: the cluster's real redis-server fixtures, plus nodes with a fenced store.

``node(node_id)`` gives a :class:`Node`: a RedisStorage fenced for that node, its
RoomOwnership and the cluster RoomDirectory whose heartbeat keeps its lease alive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from astranet.cluster import RoomDirectory
from astranet.cluster.ownership import RoomOwnership
from astranet.storage.redis import Fence, RedisStorage
from tests.cluster.conftest import (  # noqa: F401  (fixtures)
    FAST_TIMINGS,
    make_directory,
    namespace,
    private_redis,
    redis_server,
    redis_url,
)


@dataclass
class Node:
    node_id: str
    store: RedisStorage
    ownership: RoomOwnership
    directory: RoomDirectory

    async def alive(self) -> None:
        await self.directory.heartbeat(0, 0, [])


@pytest.fixture
async def node(redis_url: str, namespace: str, make_directory) -> AsyncIterator[object]:  # noqa: F811
    made: list[Node] = []

    async def make(node_id: str) -> Node:
        directory = await make_directory(node_id)
        fence = Fence(node_id)
        store = RedisStorage(redis_url, fence=fence, prefix=f"{namespace}:store:")
        ownership = RoomOwnership(
            directory.client, fence, namespace=namespace, store_prefix=f"{namespace}:store:"
        )
        made.append(Node(node_id, store, ownership, directory))
        await made[-1].alive()
        return made[-1]

    yield make
    for each in made:
        await each.ownership.stop()
        each.store.close()
