"""Cluster mode with real server processes on a real redis-server: liveness and start-up.

kill -9 of a node (declared dead within its lease, its rooms gone, new players seated on the
live node), SIGTERM (its rooms leave at once), an unreachable Redis at start (exit non-zero
naming the URL), and ``--workers`` (one process and one ``listening`` line per node).
Leases here are 2 s (``--node-lease 2``) so the suite stays fast; the default 10 s lease's
arithmetic is checked in test_directory.py::test_default_timings_meet_the_a2_deadlines.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from astranet.client import ClientOptions, GameClient
from astranet.tools.redisproc import free_port
from astranet.tools.serverproc import ServerProcess, ServerStartError

LEASE_S = 2.0
GAME = "astranet.examples.dots:game"


def _get(url: str) -> list[dict[str, object]]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _node(redis_url: str, namespace: str, node_id: str, *extra: str) -> ServerProcess:
    return ServerProcess(
        GAME,
        [
            "--redis", redis_url, "--redis-namespace", namespace, "--node-id", node_id,
            "--node-lease", str(LEASE_S), *extra,
        ],
    )  # fmt: skip


def _text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


async def _join(url: str, game_mode: str = "coop") -> GameClient:
    client = GameClient(ClientOptions(url=url, game_mode=game_mode, reconnect=False))
    await client.connect()
    return client


def _wait_until(predicate, within_s: float) -> float:
    """Seconds until ``predicate()`` held (polled: the state is in other processes)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > within_s:
            raise AssertionError(f"not within {within_s} s")
        time.sleep(0.1)
    return time.monotonic() - start


async def test_kill_9_node_is_forgotten_and_new_players_go_to_the_live_node(
    redis_url: str, namespace: str
) -> None:
    a = _node(redis_url, namespace, "a")
    b = _node(redis_url, namespace, "b")
    try:
        player = await _join(a.url)
        room_id = player.conn.room_id
        assert {n["node"] for n in _get(b.http_url + "/nodes")} == {"a", "b"}
        await asyncio.to_thread(
            _wait_until, lambda: room_id in {r["room_id"] for r in _get(b.http_url + "/rooms")}, 5
        )
        a.kill()
        a.wait()
        killed = time.monotonic()
        dead_after = await asyncio.to_thread(
            _wait_until, lambda: [n["node"] for n in _get(b.http_url + "/nodes")] == ["b"], 10
        )
        gone_after = await asyncio.to_thread(
            _wait_until, lambda: all(r["node"] == "b" for r in _get(b.http_url + "/rooms")), 10
        )
        # Within the lease, one heartbeat and one view refresh (1 s) of the kill.
        assert dead_after <= LEASE_S + 2.0, dead_after
        assert gone_after <= LEASE_S + 2.0, gone_after
        newcomer = await _join(b.url)  # a's room is gone: seated on the live node
        assert newcomer.conn.room_id != room_id
        assert newcomer.served_url == b.url
        assert time.monotonic() - killed < 15.0
        await newcomer.close()
        # The reaper runs once per heartbeat after the lease lapsed; /metrics renders are
        # coalesced: poll for the count.
        reaped = "astranet_cluster_reaped_nodes_total 1.0"
        await asyncio.to_thread(_wait_until, lambda: reaped in _text(b.http_url + "/metrics"), 5)
    finally:
        a.close()
        b.close()


async def test_sigterm_removes_the_nodes_rooms_at_once(redis_url: str, namespace: str) -> None:
    a = _node(redis_url, namespace, "a", "--node-lease", "10")
    b = _node(redis_url, namespace, "b", "--node-lease", "10")
    try:
        player = await _join(a.url, game_mode="solo")
        room_id = player.conn.room_id
        await asyncio.to_thread(
            _wait_until, lambda: room_id in {r["room_id"] for r in _get(b.http_url + "/rooms")}, 5
        )
        a.terminate()
        assert a.wait() == 0
        # With a 10 s lease, only a clean retire explains its rooms leaving this fast.
        gone_after = await asyncio.to_thread(
            _wait_until,
            lambda: room_id not in {r["room_id"] for r in _get(b.http_url + "/rooms")},
            5,
        )
        assert gone_after < 3.0
        assert [n["node"] for n in _get(b.http_url + "/nodes")] == ["b"]
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("store", ["redis", "sqlite"])
def test_unreachable_redis_at_start_exits_non_zero_naming_the_url(store: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(ServerStartError) as failed:
        ServerProcess(GAME, ["--redis", url, "--store", store])
    assert url in str(failed.value)


def test_workers_start_one_process_and_one_listening_line_per_node(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    log = (tmp_path / "workers.log").open("wb")
    parent = subprocess.Popen(
        [
            sys.executable, "-m", "astranet.server", "--game", GAME, "--workers", "2",
            "--redis", redis_url, "--redis-namespace", namespace, "--ws-port", "0",
            "--http-port", "0", "--db", str(tmp_path / "w.db"), "--store", "sqlite",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        text = ""
        deadline = time.monotonic() + 30
        while len(re.findall(r"listening ws=(\d+) http=(\d+)", text)) < 2:
            assert time.monotonic() < deadline and parent.poll() is None, text
            time.sleep(0.1)  # another process tree: poll its log
            text = (tmp_path / "workers.log").read_text(errors="replace")
        ports = re.findall(r"listening ws=(\d+) http=(\d+)", text)
        nodes_url = f"http://127.0.0.1:{ports[0][1]}/nodes"
        _wait_until(lambda: len(_get(nodes_url)) == 2, 5)  # views refresh once a second
        assert len({n["url"] for n in _get(nodes_url)}) == 2
        assert sorted((tmp_path).glob("w.*.db")) == [tmp_path / "w.0.db", tmp_path / "w.1.db"]
    finally:
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(20) == 0
        log.close()
