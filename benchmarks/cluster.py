"""Cluster mode on this machine: two nodes + one redis-server (WIRE.md A2, issue 13).

Usage::

    python benchmarks/cluster.py [--joins 1000] [--concurrency 50] [--reps 3]
                                 [--rooms 250] [--duration 20] [--skip-load] [--json]

Set-up: a throwaway ``redis-server`` (astranet.tools.redisproc) and two ``astranet-server``
nodes (co-op game, ``--redis``, ``--store sqlite``, per-address bounds lifted: every client is
127.0.0.1), node 0 pinned to CPU 0 and node 1 to CPU 1.

1. **Join latency** (``--latency-joins`` players, one at a time): Hello + FindOrCreate at the
   node the round-robin gives, and on a redirect (A2) a second socket to the owner with Hello +
   JoinRoom{seat_token}. Latency = from opening the first socket to JoinAccepted; p50/p99
   with and without a redirect.
2. **Join throughput** (``--reps`` times, a fresh game mode each): ``--joins`` players,
   alternating between the two nodes' URLs as a round-robin load balancer would,
   ``--concurrency`` at a time from ``--client-processes`` processes (one Python process
   cannot open sockets as fast as two nodes accept them). Each player then drops its TCP
   connection (no Leave: the seat stays held for Resume, so the packing can be checked and no
   snapshots flood the clients). Reported: joins/s, wall time, latency under that load, rooms
   with more than 4 players (``overfilled``) and rooms beyond ceil(joins / 4) (``twins``).
3. **Load** (unless ``--skip-load``): ``--rooms`` rooms x 4 lite bots (astranet.tools.fleet),
   half the rooms asked at each node, for ``--duration`` s of play. Reported: snapshots/s per
   client and the late-tick fraction of each node over the play window.

Goals (issue 13): redirect join p99 <= 50 ms; 1,000 joins in <= 5 s, zero overfilled, zero
twins; 1,000 clients >= 29 snapshots/s, < 1 % late ticks per node. The bots share the two
cores with both nodes and Redis, so the load figures are a floor for dedicated machines.
With ``--json`` the last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import queue as queue_module
import statistics
import sys
import time
import urllib.request
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from astranet.net.messages import (
    FindOrCreate,
    Hello,
    JoinAccepted,
    JoinRoom,
    MatchResult,
    decode_server_message,
    encode,
)
from astranet.tools.bot import BotReport
from astranet.tools.fleet import FleetConfig, run_fleet
from astranet.tools.redisproc import RedisProcess
from astranet.tools.serverproc import ServerProcess, scrape

CAPACITY = 4
GAME = "astranet.examples.coop:game"
NODE_FLAGS = ("--store", "sqlite", "--max-rooms-per-peer", "0", "--max-connections-per-peer", "0")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)]


async def _recv_until(ws: Any, kinds: tuple[type, ...]) -> Any:
    while True:
        message = decode_server_message(await ws.recv(), max_bytes=1 << 20)
        if isinstance(message, kinds):
            return message


async def join_once(url: str, mode: str) -> tuple[float, bool, str]:
    """One player's join (following a redirect); (seconds, redirected, room_id)."""
    start = time.perf_counter()
    ws = await connect(url, compression=None, max_size=None, proxy=None)
    await ws.send(encode(Hello(1)))
    await ws.send(encode(FindOrCreate("us-east", mode, 1)))
    result = await _recv_until(ws, (MatchResult,))
    redirected = result.url is not None
    if redirected:
        ws.transport.abort()
        ws = await connect(result.url, compression=None, max_size=None, proxy=None)
        await ws.send(encode(Hello(1)))
        await ws.send(encode(JoinRoom(result.room_id, result.seat_token)))
    accepted = await _recv_until(ws, (JoinAccepted,))
    elapsed = time.perf_counter() - start
    ws.transport.abort()  # abrupt: the seat is held for Resume, no snapshots come
    return elapsed, redirected, accepted.room_id


async def join_phase(
    urls: list[str], joins: int, concurrency: int, mode: str, *, offset: int = 0
) -> dict[str, Any]:
    """``joins`` joins, ``concurrency`` at a time, join ``i`` asked at ``urls[i % 2]``."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> tuple[float, bool, str]:
        async with gate:
            return await join_once(urls[(offset + i) % len(urls)], mode)

    start = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(joins)))
    wall = time.perf_counter() - start
    direct = [s for s, redirected, _ in results if not redirected]
    via = [s for s, redirected, _ in results if redirected]
    return {"wall_s": wall, "direct": direct, "redirected": via, "rooms": [r for *_, r in results]}


def _join_child(args: tuple[list[str], int, int, str, int, float], out: Any) -> None:
    urls, joins, concurrency, mode, offset, start_at = args
    time.sleep(max(0.0, start_at - time.time()))  # every client process starts together
    result = asyncio.run(join_phase(urls, joins, concurrency, mode, offset=offset))
    out.put((time.time(), result))


def parallel_join_phase(
    urls: list[str], joins: int, concurrency: int, mode: str, processes: int
) -> dict[str, Any]:
    """The join phase from ``processes`` client processes at once (one Python process cannot
    open sockets as fast as two server nodes accept them); wall = first start to last end."""
    context = get_context("spawn")
    out = context.Queue()
    start_at = time.time() + 1.5  # after the children imported everything
    shares = [joins // processes + (1 if p < joins % processes else 0) for p in range(processes)]
    children = [
        context.Process(
            target=_join_child,
            args=((urls, share, max(1, concurrency // processes), mode, p, start_at), out),
        )
        for p, share in enumerate(shares)
    ]
    for child in children:
        child.start()
    finished = [out.get(timeout=300) for _ in children]
    for child in children:
        child.join(30)
    merged: dict[str, Any] = {"direct": [], "redirected": [], "rooms": []}
    for _, result in finished:
        for key in merged:
            merged[key] += result[key]
    merged["wall_s"] = max(end for end, _ in finished) - start_at
    return merged


def _rooms(http_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(http_url + "/rooms", timeout=10) as response:
        return json.loads(response.read())


def packing(http_url: str, mode: str, joins: int) -> dict[str, int]:
    time.sleep(1.5)  # /rooms is refreshed from Redis once a second
    rooms = [r for r in _rooms(http_url) if r["game_mode"] == mode]
    return {
        "rooms": len(rooms),
        "players": sum(int(r["players"]) for r in rooms),
        "overfilled": sum(1 for r in rooms if int(r["players"]) > CAPACITY),
        "twins": max(0, len(rooms) - math.ceil(joins / CAPACITY)),
    }


def _fleet_child(config: FleetConfig, out: Any) -> None:
    """Run one fleet in its own process (run_fleet wants a main thread); report back."""

    def on_message(kind: str, worker: int, payload: dict[str, Any]) -> None:
        del worker, payload
        if kind == "play":
            out.put(("play", time.time()))

    result = run_fleet(config, on_message)
    out.put(("done", [r.to_dict() for r in result.reports]))


def load_phase(nodes: list[ServerProcess], rooms: int, duration_s: float) -> dict[str, Any]:
    """Two fleets (one per node URL) of lite bots; per-node late ticks over the play window."""
    context = get_context("spawn")
    out = context.Queue()
    halves = [rooms // 2, rooms - rooms // 2]
    children = []
    for i in range(2):
        config = FleetConfig(
            url=nodes[i].ws_url,
            game_mode="load",
            rooms=halves[i],
            duration_s=duration_s,
            workers=1,
            lite=True,
            seed=i,
            connect_concurrency=8,
        )
        child = context.Process(target=_fleet_child, args=(config, out))
        child.start()
        children.append(child)
    plays: list[float] = []
    reports: list[BotReport] = []
    marks: dict[int, Any] = {}
    ends: dict[int, Any] = {}
    deadline = time.monotonic() + duration_s + 600
    done = 0
    while done < 2 and time.monotonic() < deadline:
        try:
            kind, payload = out.get(timeout=1.0)
        except queue_module.Empty:
            if not any(child.is_alive() for child in children):
                break
            continue
        if kind == "play":
            plays.append(payload)
            if len(plays) == 2:  # both fleets play: the window is their overlap
                marks = {i: scrape(node.http_url) for i, node in enumerate(nodes)}
                overlap_end = min(plays) + duration_s - 0.5
                window_s = overlap_end - time.time()
                time.sleep(max(0.0, window_s))
                ends = {i: scrape(node.http_url) for i, node in enumerate(nodes)}
        else:
            reports.extend(BotReport.from_dict(r) for r in payload)
            done += 1
    for child in children:
        child.join(30)
    joined = [r for r in reports if r.joined]
    per_node: dict[str, Any] = {}
    for i in range(2):
        window = ends[i].minus(marks[i]) if i in marks and i in ends else None
        per_node[f"node{i}"] = {
            "ticks": window.ticks if window else None,
            "late_ticks": window.late_ticks if window else None,
            "late_fraction": window.late_ticks / window.ticks if window and window.ticks else None,
            "players": ends[i].players if i in ends else None,
        }
    rates = [r.snapshots / duration_s for r in joined]
    return {
        "clients": len(joined),
        "join_failures": len(reports) - len(joined),
        "join_errors": sorted({r.error for r in reports if not r.joined and r.error})[:5],
        "snapshots_per_s_per_client": statistics.median(rates) if rates else None,
        "snapshots_per_s_per_client_p10": percentile(rates, 10),
        "nodes": per_node,
        # Late ticks are counted while both fleets play (their overlap), in seconds:
        "window_s": min(plays) + duration_s - 0.5 - max(plays) if len(plays) == 2 else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--joins", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--latency-joins", type=int, default=400)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--rooms", type=int, default=250)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    with RedisProcess() as redis:
        nodes = [
            ServerProcess(GAME, ["--redis", redis.url, "--node-id", f"node{i}", *NODE_FLAGS], cpu=i)
            for i in range(2)
        ]
        try:
            urls = [node.ws_url for node in nodes]
            single = asyncio.run(join_phase(urls, args.latency_joins, 1, "latency"))
            latency = {
                "joins": args.latency_joins,
                "redirected": len(single["redirected"]),
                "direct_ms_p50": 1000 * (percentile(single["direct"], 50) or 0),
                "direct_ms_p99": 1000 * (percentile(single["direct"], 99) or 0),
                "redirect_ms_p50": 1000 * (percentile(single["redirected"], 50) or 0),
                "redirect_ms_p99": 1000 * (percentile(single["redirected"], 99) or 0),
            }
            print(f"latency: {json.dumps(latency)}", file=sys.stderr)
            reps = []
            for rep in range(args.reps):
                mode = f"join{rep}"
                joined = parallel_join_phase(
                    urls, args.joins, args.concurrency, mode, args.client_processes
                )
                packed = packing(nodes[0].http_url, mode, args.joins)
                reps.append(
                    {
                        "joins_per_s": args.joins / joined["wall_s"],
                        "wall_s": joined["wall_s"],
                        "redirected": len(joined["redirected"]),
                        "direct_ms_p50": 1000 * (percentile(joined["direct"], 50) or 0),
                        "direct_ms_p99": 1000 * (percentile(joined["direct"], 99) or 0),
                        "redirect_ms_p50": 1000 * (percentile(joined["redirected"], 50) or 0),
                        "redirect_ms_p99": 1000 * (percentile(joined["redirected"], 99) or 0),
                        **packed,
                    }
                )
                print(f"rep {rep}: {json.dumps(reps[-1])}", file=sys.stderr)
            summary: dict[str, Any] = {
                "latency": latency,
                "joins": args.joins,
                "concurrency": args.concurrency,
                "reps": reps,
                "median": {
                    key: statistics.median(r[key] for r in reps)
                    for key in reps[0]
                    if isinstance(reps[0][key], (int, float))
                },
            }
            if not args.skip_load:
                summary["load"] = load_phase(nodes, args.rooms, args.duration)
        finally:
            for node in nodes:
                node.close()
    median, latency = summary["median"], summary["latency"]
    print(
        f"join latency (one at a time): direct p50/p99 {latency['direct_ms_p50']:.1f}/"
        f"{latency['direct_ms_p99']:.1f} ms, with a redirect p50/p99 "
        f"{latency['redirect_ms_p50']:.1f}/{latency['redirect_ms_p99']:.1f} ms"
    )
    print(
        f"joins: {median['joins_per_s']:.0f}/s ({median['wall_s']:.2f} s for {args.joins}), "
        f"under that load direct p50/p99 {median['direct_ms_p50']:.1f}/"
        f"{median['direct_ms_p99']:.1f} ms, "
        f"redirect p50/p99 {median['redirect_ms_p50']:.1f}/{median['redirect_ms_p99']:.1f} ms, "
        f"overfilled {median['overfilled']:.0f}, twins {median['twins']:.0f}"
    )
    if "load" in summary:
        load = summary["load"]
        nodes_text = ", ".join(
            f"{name} late {100 * (n['late_fraction'] or 0):.2f} %"
            for name, n in load["nodes"].items()
        )
        if load["join_errors"]:
            print(f"join errors: {load['join_errors']}", file=sys.stderr)
        print(
            f"load: {load['clients']} clients, "
            f"{load['snapshots_per_s_per_client'] or 0:.1f} snapshots/s per client (median), "
            f"{nodes_text}"
        )
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
