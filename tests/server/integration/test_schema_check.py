"""Issue 11 item 2: a client of another game's schema is refused at join, loudly, on both sides."""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest

from astranet.client import ClientOptions, GameClient
from astranet.client.demo import EXIT_JOIN, _parser, run
from astranet.errors import SchemaMismatch
from astranet.game import load_game
from astranet.net import ServerConnection
from astranet.net.messages import ErrorMessage, FindOrCreate, Hello
from astranet.server import session as session_module
from tests.server.integration.conftest import Running, StartServer

DOTS = load_game("astranet.examples.dots:game")
COOP = load_game("astranet.examples.coop:game")


async def test_get_schema_serves_the_canonical_json_whose_crc32_is_the_fingerprint(
    running: Running,
) -> None:
    status, content_type, body = await running.get("/schema")
    assert status == 200
    assert content_type == "application/json"
    assert body == DOTS.schema.canonical_json()
    assert zlib.crc32(body) == DOTS.schema.fingerprint
    assert json.loads(body)["components"][0]["name"] == "Body"


async def test_join_accepted_names_the_servers_schema(running: Running) -> None:
    client = await running.joined_client(game_mode="dots")
    assert client.joined is not None
    assert client.joined.schema == DOTS.schema.fingerprint
    await client.close()


async def test_a_wire_client_of_another_schema_gets_schema_mismatch_and_1002(
    running: Running,
) -> None:
    client = await running.client()
    await client.send(Hello(1, schema=COOP.schema.fingerprint))
    await client.send(FindOrCreate("us-east", "dots", 1))  # pipelined: must not seat anyone
    refusal = await client.expect(ErrorMessage)
    assert refusal.code == "schema_mismatch"
    assert (await client.closed())[0] == 1002
    assert await running.rooms() == []


@pytest.mark.timeout(30)
async def test_game_client_raises_a_typed_schema_mismatch(running: Running) -> None:
    client = GameClient(
        ClientOptions(url=running.url, game_mode="dots", schema=COOP.schema.fingerprint)
    )
    with pytest.raises(SchemaMismatch) as caught:
        await client.connect()
    message = str(caught.value)
    assert f"client={COOP.schema.fingerprint:#010x}" in message
    assert f"server={DOTS.schema.fingerprint:#010x}" in message
    assert "same game" in message
    assert await running.rooms() == []


@pytest.mark.timeout(30)
async def test_the_demo_client_of_another_game_exits_3_naming_the_mismatch(
    running: Running,
) -> None:
    """The issue's case: a co-op client against a dots server used to print 0 snapshots and
    exit 0."""
    lines: list[str] = []
    args = _parser().parse_args(
        ["--url", running.url, "--game", "astranet.examples.coop:game", "--duration", "1"]
    )
    assert await run(args, lines.append) == EXIT_JOIN
    assert lines[-1].startswith("astranet-client: join refused: schema_mismatch: schema mismatch")


@pytest.mark.timeout(30)
async def test_the_client_also_refuses_a_join_accepted_of_another_schema(
    serve: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that does not check Hello.schema (an older one) still cannot fool the client."""
    original = session_module.ServerConnection

    def unchecked(**kwargs: Any) -> ServerConnection:
        kwargs.pop("schema_fingerprint", None)
        return original(**kwargs)

    monkeypatch.setattr(session_module, "ServerConnection", unchecked)
    running = await serve()
    client = GameClient(
        ClientOptions(url=running.url, game_mode="dots", schema=COOP.schema.fingerprint)
    )
    with pytest.raises(SchemaMismatch):
        await client.connect()
