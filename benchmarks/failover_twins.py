"""Twins under failover, repeated: concurrent resumes on two nodes, and pause/continue.

Usage::

    python benchmarks/failover_twins.py [--races 50] [--pauses 50] [--rooms-per-kill 10]
                                        [--node-lease 2] [--json]

The goal of issue 14: zero twins in 50 repetitions of each of the two failover tests
(tests/failover/test_failover.py runs each a few times in the suite):

* **race**: rooms of 2 players on a node that is then SIGKILLed; once the cluster declared it
  dead, the two players of each room Resume at the same moment on two different live nodes.
  A twin is a room both nodes accepted (two JoinAccepted), or whose players end on different
  nodes, or whose owner record is not at epoch 2 on the node that serves it. Each kill races
  ``--rooms-per-kill`` rooms; kills repeat until ``--races`` rooms raced.
* **pause**: a room of 2 players on node A; SIGSTOP A past the dead-node deadline, one player
  resumes on B (B restores the room), SIGCONT A. A twin is A still serving the other player
  (no close ``1012 room moved to another node`` within 10 s) or B not owning the room.

Prints one line per scenario and ``--json`` one JSON object last. Figures: docs/benchmarks.md
("Room failover").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from astranet.cluster.failover import ROOM_MOVED_CLOSE_CODE
from astranet.net.messages import ErrorMessage, JoinAccepted, MatchResult, Snapshot
from astranet.testing import TestClient
from astranet.tools.redisproc import RedisProcess
from astranet.tools.serverproc import ServerProcess

GAME = "astranet.examples.dots:game"
CHECKPOINT_INTERVAL_S = 0.2
WAIT_S = 10.0
POLL_S = 0.05


def start_node(redis_url: str, node_id: str, lease_s: float) -> ServerProcess:
    return ServerProcess(
        GAME,
        (
            "--redis",
            redis_url,
            "--node-id",
            node_id,
            "--node-lease",
            str(lease_s),
            "--checkpoint-interval",
            str(CHECKPOINT_INTERVAL_S),
        ),
    )


async def declared_dead(client: redis.Redis, node_id: str, lease_s: float) -> None:
    for _ in range(round((lease_s * 3 + WAIT_S) / POLL_S)):
        if not client.exists(f"astranet:node:{node_id}"):
            return
        await asyncio.sleep(POLL_S)  # polling another process's lease in Redis
    raise RuntimeError(f"{node_id} never declared dead")


def owner(client: redis.Redis, room_id: str) -> tuple[str, int]:
    node, epoch = client.hmget(f"astranet:store:room:{room_id}:owner", "node", "epoch")
    return (node or b"").decode(), int(epoch or 0)


async def resume_once(player: TestClient, url: str) -> object:
    player.url = url
    await player.resume()
    async with asyncio.timeout(WAIT_S):
        while True:
            message = await player.recv()
            if isinstance(message, JoinAccepted | MatchResult | ErrorMessage):
                return message


async def seat_pair(url: str, mode: str) -> tuple[TestClient, TestClient, str]:
    first, second = TestClient(url), TestClient(url)
    joined = await first.join(game_mode=mode)
    again = await second.join(game_mode=mode)
    assert again.room_id == joined.room_id
    return first, second, joined.room_id


async def races(args: argparse.Namespace, store: RedisProcess) -> dict[str, object]:
    client = redis.Redis.from_url(store.url)
    raced = twins = kills = 0
    started = time.monotonic()
    try:
        while raced < args.races:
            victim_id = f"victim{kills}"
            victim = await asyncio.to_thread(start_node, store.url, victim_id, args.node_lease)
            count = min(args.rooms_per_kill, args.races - raced)
            pairs = [await seat_pair(victim.url, f"k{kills}r{i}") for i in range(count)]
            # The racers start after the rooms exist: new rooms go to the least-loaded node
            # (A2), and these must all live on the victim.
            b_id, c_id = f"raceB{kills}", f"raceC{kills}"
            b, c = await asyncio.gather(
                asyncio.to_thread(start_node, store.url, b_id, args.node_lease),
                asyncio.to_thread(start_node, store.url, c_id, args.node_lease),
            )
            urls = {b_id: b.url, c_id: c.url}
            await asyncio.sleep(3 * CHECKPOINT_INTERVAL_S)  # every room has a checkpoint
            victim.kill()
            victim.wait()
            await declared_dead(client, victim_id, args.node_lease)
            answers = await asyncio.gather(
                *(asyncio.gather(resume_once(p, b.url), resume_once(q, c.url)) for p, q, _ in pairs)
            )
            for (p, q, room_id), (at_b, at_c) in zip(pairs, answers, strict=True):
                raced += 1
                node, epoch = owner(client, room_id)
                accepted = [isinstance(m, JoinAccepted) for m in (at_b, at_c)]
                if sum(accepted) != 1 or epoch != 2 or node not in urls:
                    twins += 1
                    continue
                loser, redirect = (q, at_c) if accepted[0] else (p, at_b)
                if not (isinstance(redirect, MatchResult) and redirect.url == urls[node]):
                    twins += 1
                    continue
                if not isinstance(await resume_once(loser, redirect.url), JoinAccepted):
                    twins += 1
            for p, q, _ in pairs:
                await p.close()
                await q.close()
            victim.close()
            await asyncio.gather(asyncio.to_thread(b.close), asyncio.to_thread(c.close))
            kills += 1
    finally:
        client.close()
    return {
        "races": raced,
        "kills": kills,
        "twins": twins,
        "seconds": round(time.monotonic() - started, 1),
    }


async def pauses(args: argparse.Namespace, store: RedisProcess) -> dict[str, object]:
    client = redis.Redis.from_url(store.url)
    a = await asyncio.to_thread(start_node, store.url, "pauseA", args.node_lease)
    b = await asyncio.to_thread(start_node, store.url, "pauseB", args.node_lease)
    twins = misplaced = 0
    closed_ms: list[float] = []
    started = time.monotonic()
    try:
        rep = 0
        while len(closed_ms) < args.pauses and misplaced <= args.pauses:
            rep += 1
            mover, stale, room_id = await seat_pair(a.url, f"p{rep}")
            if owner(client, room_id)[0] != "pauseA":  # placed on B (least-loaded): re-seat
                misplaced += 1
                await mover.close()
                await stale.close()
                continue
            await asyncio.sleep(3 * CHECKPOINT_INTERVAL_S)
            a.proc.send_signal(signal.SIGSTOP)
            await declared_dead(client, "pauseA", args.node_lease)
            await mover.drop()
            answer = await resume_once(mover, b.url)
            await mover.expect(Snapshot)
            continued = time.monotonic()
            a.proc.send_signal(signal.SIGCONT)
            try:
                code, _ = await stale.closed(within_s=WAIT_S)
            except TimeoutError:
                code = None
            closed_ms.append((time.monotonic() - continued) * 1000)
            if (
                not isinstance(answer, JoinAccepted)
                or code != ROOM_MOVED_CLOSE_CODE
                or owner(client, room_id) != ("pauseB", 2)
            ):
                twins += 1
            await mover.close()
    finally:
        client.close()
        a.proc.send_signal(signal.SIGCONT)
        await asyncio.to_thread(a.close)
        await asyncio.to_thread(b.close)
    closed_ms.sort()
    return {
        "pauses": len(closed_ms),
        "misplaced": misplaced,
        "twins": twins,
        "sigcont_to_close_ms_p50": closed_ms[len(closed_ms) // 2] if closed_ms else None,
        "sigcont_to_close_ms_max": closed_ms[-1] if closed_ms else None,
        "seconds": round(time.monotonic() - started, 1),
    }


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    with RedisProcess() as store:
        race = await races(args, store) if args.races else None
        if race:
            print(f"race: {race['twins']} twins in {race['races']} races ({race['kills']} kills)")
        pause = await pauses(args, store) if args.pauses else None
        if pause:
            print(
                f"pause: {pause['twins']} twins in {pause['pauses']} pauses; SIGCONT -> stale "
                f"session closed p50 {pause['sigcont_to_close_ms_p50']:.0f} ms, "
                f"max {pause['sigcont_to_close_ms_max']:.0f} ms"
            )
    return {"node_lease_s": args.node_lease, "race": race, "pause": pause}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--races", type=int, default=50)
    parser.add_argument("--pauses", type=int, default=50)
    parser.add_argument("--rooms-per-kill", type=int, default=10)
    parser.add_argument("--node-lease", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
