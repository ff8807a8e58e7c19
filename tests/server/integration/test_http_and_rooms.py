"""The HTTP side port, the shared tick, room isolation on failure, and empty-room closing."""

from __future__ import annotations

import asyncio
import json

import esper
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from astranet.examples.dots import Dots, encode_input
from astranet.game import SimContext
from astranet.net.messages import Leave, Ping, Pong
from astranet.systems import Stage, add_system

from .conftest import Running, StartServer, WireClient, fetch, metric_value

pytestmark = pytest.mark.timeout(30)


async def test_healthz_regions_and_404(serve: StartServer) -> None:
    running = await serve("--regions", "us-east,eu-central")
    assert await running.get("/healthz") == (200, "text/plain; charset=utf-8", b"ok")
    status, content_type, body = await running.get("/regions")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == ["us-east", "eu-central"]
    assert (await running.get("/nope"))[0] == 404


async def test_rooms_lists_joined_rooms_with_players_and_tick(running: Running) -> None:
    assert await running.rooms() == []
    a = await running.joined_client(game_mode="coop")
    await running.joined_client(game_mode="coop")
    b = await running.joined_client(region="us-west", game_mode="duel")
    await b.next_snapshot()
    rooms = {r["room_id"]: r for r in await running.rooms()}
    assert rooms[a.joined.room_id] | {"tick": 0} == {  # type: ignore[union-attr]
        "room_id": a.joined.room_id,
        "region": "us-east",
        "game_mode": "coop",  # type: ignore[union-attr]
        "players": 2,
        "capacity": 4,
        "tick": 0,
    }
    assert rooms[b.joined.room_id]["region"] == "us-west"  # type: ignore[union-attr]
    assert all(r["tick"] >= 1 for r in rooms.values())


async def test_metrics_count_traffic_and_kicks(running: Running) -> None:
    client = await running.joined_client()
    await client.send(Ping(1, 1))
    await client.expect(Pong)
    await client.next_snapshot()
    kicked = await running.joined_client()
    await kicked.send_input(encode_input(1, 0), seq=3)
    await kicked.send_input(encode_input(1, 0), seq=3)
    assert (await kicked.closed())[0] == 1008
    text = await running.metrics()
    assert metric_value(text, "astranet_kicks_total", reason="replay") == 1
    assert metric_value(text, "astranet_messages_received_total", type="Hello") == 2
    assert metric_value(text, "astranet_messages_received_total", type="Ping") == 1
    assert metric_value(text, "astranet_bytes_sent_total") > 0
    assert metric_value(text, "astranet_bytes_received_total") > 0
    assert metric_value(text, "astranet_snapshot_bytes_total") > 0
    assert metric_value(text, "astranet_rooms") == 1
    assert "astranet_tick_duration_seconds_bucket" in text
    assert 'astranet_system_seconds_count{system="InputIngestionSystem"}' in text


@pytest.mark.slow
async def test_tick_advances_at_the_configured_rate(running: Running) -> None:
    client = await running.joined_client()
    loop = asyncio.get_running_loop()
    first = await client.next_snapshot()
    started = loop.time()
    tick0 = (await running.rooms())[0]["tick"]
    for _ in range(60):  # ~2 s, paced by the server's own snapshots
        last = await client.next_snapshot()
    tick1 = (await running.rooms())[0]["tick"]
    elapsed = loop.time() - started
    assert (tick1 - tick0) / elapsed == pytest.approx(30, rel=0.1)
    assert last.server_tick - first.server_tick == pytest.approx(30 * elapsed, abs=6)


class _BombGame(Dots):
    """dots, plus an input that makes the room's simulation raise (a game bug on demand)."""

    def decode_input(self, blob: bytes) -> tuple[int, int] | str:
        if blob == b"BOOM":
            return "boom"
        return super().decode_input(blob)

    def check_input(self, sim: SimContext, net_id: int, command: object) -> str | None:
        return None if command == "boom" else super().check_input(sim, net_id, command)

    def apply_input(self, sim: SimContext, net_id: int, command: object) -> None:
        if command == "boom":
            raise RuntimeError("game bug")
        super().apply_input(sim, net_id, command)  # type: ignore[arg-type]


async def test_an_input_that_breaks_the_game_kicks_that_player_not_the_room(
    serve: StartServer,
) -> None:
    """apply_input raising on one player's command costs that player, not their room (issue 11)."""
    running = await serve(game=_BombGame())
    doomed = await running.joined_client(game_mode="a")
    roommate = await running.joined_client(game_mode="a")
    survivor = await running.joined_client(game_mode="b")
    await doomed.send_input(b"BOOM")
    assert await doomed.closed() == (1008, "game error: apply_input raised RuntimeError")
    for client in (roommate, survivor):
        before = (await client.next_snapshot()).server_tick
        for _ in range(10):
            snapshot = await client.next_snapshot()
        assert snapshot.server_tick >= before + 9
    rooms = {r["room_id"] for r in await running.rooms()}
    assert rooms == {roommate.joined.room_id, survivor.joined.room_id}  # type: ignore[union-attr]


class _SystemBombGame(Dots):
    """A game whose SIMULATE system raises in rooms of mode ``bad`` only."""

    def setup(self, sim: SimContext) -> None:
        super().setup(sim)

        class Explode(esper.Processor):
            def process(self, sim: SimContext) -> None:
                if sim.tick % 2 == 0 and explode.get(sim.room_id):
                    raise RuntimeError("system bug")

        add_system(Explode(), Stage.SIMULATE, order=1)


explode: dict[str, bool] = {}  # room_id -> armed (set by the test once it knows the id)


async def test_a_system_raising_in_one_room_spares_the_others(serve: StartServer) -> None:
    running = await serve(game=_SystemBombGame())
    doomed = await running.joined_client(game_mode="bad")
    fine = await running.joined_client(game_mode="good")
    explode[doomed.joined.room_id] = True  # type: ignore[union-attr]
    try:
        assert (await doomed.closed())[0] == 1011
        ticks = [(await fine.next_snapshot()).server_tick for _ in range(5)]
        assert ticks == sorted(ticks) and ticks[-1] > ticks[0]
        text = await running.metrics()
        assert metric_value(text, "astranet_rooms") == 1
    finally:
        explode.clear()


async def test_empty_room_closes_after_the_grace(serve: StartServer) -> None:
    running = await serve("--empty-room-grace", "0.2")
    leaver = await running.joined_client(game_mode="short")
    clock = await running.joined_client(game_mode="other")  # its snapshots pace the wait
    room_id = leaver.joined.room_id  # type: ignore[union-attr]
    await leaver.send(Leave())
    await leaver.closed()
    # Housekeeping runs once a second: the room must be gone within ~1.2 s, i.e. within
    # 60 snapshots of the other room (bounded, event-paced wait).
    for _ in range(60):
        await clock.next_snapshot()
        if room_id not in running.server.rooms:
            break
    assert room_id not in running.server.rooms
    assert room_id not in [r["room_id"] for r in await running.rooms()]
    assert clock.joined.room_id in running.server.rooms  # type: ignore[union-attr]


async def test_a_room_with_players_stays_open(serve: StartServer) -> None:
    running = await serve("--empty-room-grace", "0")
    client: WireClient = await running.joined_client()
    for _ in range(40):  # past one housekeeping pass
        await client.next_snapshot()
    assert client.joined.room_id in running.server.rooms  # type: ignore[union-attr]


async def test_allowed_origins_guard_the_websocket_upgrade(serve: StartServer) -> None:
    running = await serve("--allowed-origins", "https://play.example.com")
    async with connect(running.url, origin="https://play.example.com") as ws:  # type: ignore[arg-type]
        assert ws.protocol.state.name == "OPEN"
    async with connect(running.url) as ws:  # no Origin: a non-browser client
        assert ws.protocol.state.name == "OPEN"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(running.url, origin="https://evil.example.com"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403


async def test_http_host_binds_the_side_port_apart(serve: StartServer) -> None:
    running = await serve("--http-host", "127.0.0.2")
    status, _, body = await asyncio.to_thread(
        fetch, f"http://127.0.0.2:{running.server.http_port}/healthz"
    )
    assert (status, body) == (200, b"ok")
