"""The client's failover candidates: who it tries, in which order, and /nodes discovery."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from astranet.client import ClientOptions, GameClient
from astranet.client.events import EventKind

pytestmark = pytest.mark.timeout(30)

A, B, C = "ws://a.invalid:1", "ws://b.invalid:2", "ws://c.invalid:3"


def test_the_serving_node_comes_first_then_every_other_known_node_in_turn() -> None:
    client = GameClient(ClientOptions(url=A, fallback_urls=(B, A, C)))
    client.served_url = B  # we were redirected to B and played there
    tried: list[str] = []
    for _ in range(6):
        tried.append(client._next_candidate(tried))
    assert tried == [B, A, C, B, A, C]


@pytest.fixture
async def nodes_url() -> AsyncIterator[str]:
    async def nodes(request: web.Request) -> web.Response:
        rows = [{"node": "n2", "url": B}, {"node": "n3", "url": C}, {"node": "bad"}, "junk"]
        return web.Response(text=json.dumps(rows), content_type="application/json")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(text="not json")

    app = web.Application()
    app.router.add_get("/nodes", nodes)
    app.router.add_get("/broken", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_live_nodes_from_the_nodes_list_join_the_candidates(nodes_url: str) -> None:
    client = GameClient(ClientOptions(url=A, nodes_url=f"{nodes_url}/nodes"))
    await client._discover_nodes()
    assert client._known_urls == [A, B, C]  # malformed rows are skipped


async def test_an_unreadable_nodes_list_is_reported_not_raised(nodes_url: str) -> None:
    client = GameClient(ClientOptions(url=A, nodes_url=f"{nodes_url}/broken"))
    await client._discover_nodes()
    assert client._known_urls == [A]
    [event] = client.drain_events()
    assert event.kind is EventKind.SERVER_ERROR and "cannot read" in event.detail
