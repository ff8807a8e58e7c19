"""Room failover benchmark: N nodes on one Redis, R rooms of 4 players, kill -9 one node.

Usage::

    python benchmarks/failover.py [--nodes 3] [--rooms 20] [--checkpoint-interval 1.0]
                                  [--node-lease 10] [--repeat 1] [--settle 3] [--json]

Each repetition starts a real ``redis-server`` and ``--nodes`` server processes sharing it
(cluster mode, Redis store), seats ``--rooms`` x 4 library clients (``GameClient``: they follow
redirects and resume through failover by themselves, with every node's URL as a fallback),
plays for ``--settle`` seconds, then SIGKILLs the node hosting the most rooms and measures:

* resumed: players of the killed node who got a snapshot again (goal: 100 %);
* kill -> first snapshot after the resume, p50/p99 over those players (goal: p99 <= the
  dead-node deadline (the lease) + 2 s);
* lost: per room, the last ``server_tick`` its players saw before the kill minus the tick of
  the checkpoint it was restored from (goal: at most ``--checkpoint-interval`` of ticks);
* owners: rooms whose players ended on more than one node, or whose owner record is not the
  node serving them (goal: 0 -- "twins").

Prints one line per repetition and a summary; ``--json`` prints one JSON object last.
Figures are recorded in docs/benchmarks.md (section "Room failover").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from astranet.client import ClientOptions, GameClient
from astranet.examples.dots import encode_input
from astranet.storage.redis import RedisStorage
from astranet.tools.redisproc import RedisProcess
from astranet.tools.serverproc import ServerProcess

GAME = "astranet.examples.dots:game"
TICK_HZ = 30
PLAYERS_PER_ROOM = 4
INPUT_PERIOD_S = 0.1  # 10 inputs/s per player: enough to move, light on a 2-core machine
RESUME_LIMIT_S = 40.0  # past the 30 s seat hold nothing can resume any more


@dataclass
class Player:
    index: int
    client: GameClient
    room_id: str = ""
    served_url: str = ""
    last_tick: int = 0  # newest server_tick seen
    tick_at_kill: int | None = None
    epoch_at_kill: int = 0
    resumed_at: float | None = None  # monotonic time of the first snapshot after the resume
    resumed_tick: int | None = None
    arrivals: list[float] = field(default_factory=list)


def node_args(redis_url: str, index: int, args: argparse.Namespace) -> list[str]:
    return [
        "--redis",
        redis_url,
        "--store",
        "redis",
        "--node-id",
        f"node{index}",
        "--checkpoint-interval",
        str(args.checkpoint_interval),
        "--tick-hz",
        str(TICK_HZ),
        "--node-lease",
        str(args.node_lease),
    ]


async def drive(player: Player, stop: asyncio.Event, resumed: asyncio.Semaphore) -> None:
    """Ack what arrives, send a small input every INPUT_PERIOD_S, note ticks and arrivals."""
    client = player.client
    step = 0
    while not stop.is_set():
        for received in client.drain_snapshots():
            tick = int(received.server_tick)
            if (
                received.epoch > player.epoch_at_kill
                and player.tick_at_kill is not None
                and player.resumed_at is None
            ):
                player.resumed_at = received.arrival_ms / 1000.0  # client clock: monotonic
                player.resumed_tick = tick
                resumed.release()
            player.last_tick = max(player.last_tick, tick)
            client.ack(int(received.snapshot_id))
        step += 1
        angle = (step % 16) * math.pi / 8  # walk in circles, at most unit speed
        client.send_input(encode_input(0.8 * math.cos(angle), 0.8 * math.sin(angle)))
        await asyncio.sleep(INPUT_PERIOD_S)  # the input rate is the point


async def one_run(args: argparse.Namespace, run: int) -> dict[str, object]:
    with RedisProcess() as store:
        nodes = [ServerProcess(GAME, node_args(store.url, i, args)) for i in range(args.nodes)]
        try:
            return await _measure(args, run, store, nodes)
        finally:
            for node in nodes:
                if node.proc.poll() is None:
                    node.close()


async def _measure(
    args: argparse.Namespace, run: int, store: RedisProcess, nodes: list[ServerProcess]
) -> dict[str, object]:
    urls = tuple(node.ws_url for node in nodes)
    players: list[Player] = []
    for index in range(args.rooms * PLAYERS_PER_ROOM):
        options = ClientOptions(
            url=urls[(index // PLAYERS_PER_ROOM) % len(urls)],  # a room's 4 on one node
            game_mode="dots",
            fallback_urls=urls,
            give_up_after_s=RESUME_LIMIT_S,
            seed=run * 1000 + index,
        )
        client = GameClient(options)
        accepted = await client.connect()  # FindOrCreate fills rooms of 4 in order
        players.append(Player(index, client, accepted.room_id))
    stop = asyncio.Event()
    resumed_signal = asyncio.Semaphore(0)  # released once per player back in play
    tasks = [asyncio.create_task(drive(p, stop, resumed_signal)) for p in players]
    await asyncio.sleep(args.settle)  # play: several checkpoints happen meanwhile

    for player in players:
        player.served_url = player.client.served_url
    by_url: dict[str, list[Player]] = {}
    for player in players:
        by_url.setdefault(player.served_url, []).append(player)
    victim_url = max(by_url, key=lambda url: len({p.room_id for p in by_url[url]}))
    victim = nodes[urls.index(victim_url)]
    affected = by_url[victim_url]
    for player in affected:
        player.tick_at_kill = player.last_tick
        player.epoch_at_kill = player.client.epoch
    killed_at = time.monotonic()
    victim.proc.kill()
    victim.proc.wait()

    # The checkpoints the rooms will be restored from (no node owns them until the lease ends).
    reader = RedisStorage(store.url)
    rooms = sorted({p.room_id for p in affected})
    checkpoint_ticks = {}
    for room_id in rooms:
        checkpoint = reader.load_checkpoint(room_id)
        checkpoint_ticks[room_id] = checkpoint.tick if checkpoint is not None else None
    reader.close()

    try:
        async with asyncio.timeout(RESUME_LIMIT_S):
            for _ in affected:
                await resumed_signal.acquire()
    except TimeoutError:
        pass  # reported below as players not resumed
    stop.set()
    await asyncio.gather(*tasks)

    owners = _owners(store.url, rooms)
    twins = 0
    for room_id in rooms:
        serving = {p.client.served_url for p in affected if p.room_id == room_id}
        if len(serving) > 1:
            twins += 1
    resumed = [p for p in affected if p.resumed_at is not None]
    stuck = [p for p in affected if p.resumed_at is None]
    if stuck:  # say why, from the client's own events
        events = stuck[0].client.drain_events()[-4:]
        print(f"  {len(stuck)} not resumed; player {stuck[0].index}: {events}", flush=True)
    latencies = sorted(p.resumed_at - killed_at for p in resumed)  # type: ignore[operator]
    lost_ticks = []
    for room_id in rooms:
        seen = max((p.tick_at_kill or 0) for p in affected if p.room_id == room_id)
        saved = checkpoint_ticks[room_id]
        if saved is not None:
            lost_ticks.append(seen - saved)
    for player in players:
        await player.client.close()
    result = {
        "run": run,
        "players_on_killed_node": len(affected),
        "resumed": len(resumed),
        "rooms_on_killed_node": len(rooms),
        "p50_s": _quantile(latencies, 0.5),
        "p99_s": _quantile(latencies, 0.99),
        "max_s": latencies[-1] if latencies else None,
        "lost_ticks_max": max(lost_ticks) if lost_ticks else None,
        "lost_s_max": max(lost_ticks) / TICK_HZ if lost_ticks else None,
        "twins": twins,
        "owner_epochs": owners,
    }
    print(
        f"run {run}: killed {victim_url} ({len(rooms)} rooms, {len(affected)} players): "
        f"resumed {len(resumed)}/{len(affected)}, kill->play p50 {result['p50_s']:.2f} s "
        f"p99 {result['p99_s']:.2f} s, lost <= {result['lost_ticks_max']} ticks, twins {twins}",
        flush=True,
    )
    return result


def _owners(url: str, rooms: list[str]) -> dict[str, int]:
    client = redis.Redis.from_url(url)
    try:
        return {
            room_id: int(client.hget(f"astranet:store:room:{room_id}:owner", "epoch") or 0)
            for room_id in rooms
        }
    finally:
        client.close()


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--checkpoint-interval", type=float, default=1.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument(
        "--node-lease", type=float, default=10.0, help="dead-node deadline, s (A2: 10)"
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = [asyncio.run(one_run(args, run)) for run in range(args.repeat)]
    p99s = [r["p99_s"] for r in runs]
    summary = {
        "nodes": args.nodes,
        "rooms": args.rooms,
        "checkpoint_interval_s": args.checkpoint_interval,
        "node_lease_s": args.node_lease,
        "goal_p99_s": args.node_lease + 2.0,
        "repeat": args.repeat,
        "players_on_killed_node": sum(r["players_on_killed_node"] for r in runs),
        "resumed": sum(r["resumed"] for r in runs),
        "p50_s_median": statistics.median(r["p50_s"] for r in runs),
        "p99_s_median": statistics.median(p99s),
        "p99_s_max": max(p99s),
        "lost_ticks_max": max((r["lost_ticks_max"] or 0) for r in runs),
        "twins": sum(r["twins"] for r in runs),
        "runs": runs,
    }
    print(
        f"summary: resumed {summary['resumed']}/{summary['players_on_killed_node']}, "
        f"p50 {summary['p50_s_median']:.2f} s, p99 median {summary['p99_s_median']:.2f} s "
        f"(max {summary['p99_s_max']:.2f} s), lost <= {summary['lost_ticks_max']} ticks, "
        f"twins {summary['twins']}"
    )
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
