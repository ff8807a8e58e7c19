"""WIRE rules 7 and 8 over real sockets: Resume, takeover, Leave, and graceful shutdown.

The SIGTERM test runs the real ``astranet-server`` console script as a subprocess (the signal
handling is the process's job); the others use the in-process server.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from astranet.examples.dots import encode_input
from astranet.net.messages import ErrorMessage, JoinAccepted, Resume
from astranet.server.session import TAKEOVER_REASON

from .conftest import Running, StartServer, WireClient

pytestmark = pytest.mark.timeout(30)

SERVER_BIN = Path(sys.executable).parent / "astranet-server"
LISTENING = re.compile(rb"listening ws=(\d+) http=(\d+)")


async def _resume(running: Running, old: JoinAccepted, token: bytes | None = None) -> WireClient:
    client = await running.client()
    await client.hello()
    await client.send(
        Resume(old.room_id, old.player_id, old.resume_token if token is None else token)
    )
    return client


async def test_resume_after_abrupt_disconnect_keeps_player_and_entity(running: Running) -> None:
    first = await running.joined_client()
    old = first.joined
    assert old is not None
    await first.send_input(encode_input(1, 0), seq=5)
    await first.snapshot_where(lambda s: s.last_input_seq == 5)
    first.ws.transport.abort()  # no close frame: the network just went away
    await running.ended(first)
    assert (await running.rooms())[0]["players"] == 1  # the seat is held

    second = await _resume(running, old)
    joined = await second.expect(JoinAccepted)
    assert (joined.room_id, joined.player_id, joined.entity) == (
        old.room_id,
        old.player_id,
        old.entity,
    )
    assert joined.session_key != old.session_key
    first_snapshot = await second.next_snapshot()
    assert first_snapshot.base_id is None  # full state after a resume
    assert first_snapshot.last_input_seq == 5
    # The replay guard continues across the resume: seq 6 is fine, 5 again would be a replay.
    second.joined, second.seq = joined, 5
    frame = await second.send_input(encode_input(1, 0))
    await second.snapshot_where(lambda s: s.last_input_seq == frame.seq)
    await second.send_input(encode_input(1, 0), seq=5)
    assert await second.closed() == (1008, "input frame replayed")


async def test_resume_with_a_wrong_token_is_denied(running: Running) -> None:
    first = await running.joined_client()
    old = first.joined
    assert old is not None
    first.ws.transport.abort()
    await running.ended(first)
    client = await _resume(running, old, token=b"\x00" * 32)
    error = await client.expect(ErrorMessage)
    assert error.code == "resume_denied"
    assert client.ws.close_code is None  # still in the lobby


async def test_resume_while_the_old_socket_is_open_takes_over(running: Running) -> None:
    first = await running.joined_client()
    old = first.joined
    assert old is not None
    second = await _resume(running, old)
    joined = await second.expect(JoinAccepted)
    assert (joined.player_id, joined.entity) == (old.player_id, old.entity)
    assert await first.closed() == (1008, TAKEOVER_REASON)
    assert (await second.next_snapshot()).base_id is None
    await running.ended(first)
    rooms = await running.rooms()
    assert [r["players"] for r in rooms] == [1]


async def test_leave_frees_the_seat_and_closes_1000(running: Running) -> None:
    staying = await running.joined_client()
    leaving = await running.joined_client()
    assert (await running.rooms())[0]["players"] == 2
    from astranet.net.messages import Leave

    await leaving.send(Leave())
    assert (await leaving.closed())[0] == 1000
    await running.ended(leaving)
    assert (await running.rooms())[0]["players"] == 1
    assert staying.ws.close_code is None


async def test_shutdown_closes_clients_1001(serve: StartServer) -> None:
    running = await serve()
    clients = [await running.joined_client() for _ in range(3)]
    lobby = await running.client()
    await lobby.hello()
    await running.server.shutdown()
    for client in [*clients, lobby]:
        assert (await client.closed())[0] == 1001


async def test_shutdown_is_bounded_when_clients_never_answer(serve: StartServer) -> None:
    running = await serve()
    mute = [await running.joined_client() for _ in range(2)]
    for client in mute:
        client.ws.transport.pause_reading()  # never reads our close frame, never answers
    started = time.monotonic()
    await running.server.shutdown()
    assert time.monotonic() - started < 5.0


@pytest.mark.slow
@pytest.mark.timeout(40)
async def test_sigterm_closes_clients_1001_and_exits_0(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        str(SERVER_BIN),
        "--game",
        "astranet.examples.dots:game",
        "--ws-port",
        "0",
        "--http-port",
        "0",
        "--db",
        str(tmp_path / "astranet.db"),
        "--log-level",
        "info",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            while (match := LISTENING.search(await process.stdout.readline())) is None:
                pass
        client = await WireClient.open(f"ws://127.0.0.1:{int(match.group(1))}")
        await client.join()
        await client.next_snapshot()
        process.send_signal(signal.SIGTERM)
        assert (await client.closed(within_s=10))[0] == 1001
        async with asyncio.timeout(10):
            await process.stdout.read()
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
