"""Helper process of the browser end-to-end test: a link conditioner and two Python coop bots.

``python -m tests.browser.pybots WS_PORT DURATION_S [ONE_WAY_MS]`` starts a LinkConditioner in
front of the server (default 50 ms each way: 100 ms RTT), prints ``{"port": P}`` (the pages
connect there too), waits for a line on stdin, plays two :class:`astranet.tools.bot.Bot` s
through it for DURATION_S, and prints one JSON line: per bot the room, prediction counters and
the team score its replica saw at each server tick.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import numpy as np

from astranet.client.events import ClientOptions
from astranet.examples.coop import TEAM, game
from astranet.net.linkconditioner import LinkConditioner, LinkProfile
from astranet.tools.bot import Bot

ONE_WAY_MS = 50.0
FPS = 30.0


def _scores(bot: Bot, into: dict[int, float]) -> None:
    world = bot.world
    if world is None or world.replica.latest is None:
        return
    store = world.replica.store
    team = np.flatnonzero(store["Body.kind"] == TEAM)
    if team.size:
        into[int(world.replica.latest.tick)] = float(store["Team.score"][team[0]])


async def main(ws_port: int, duration_s: float, one_way_ms: float = ONE_WAY_MS) -> None:
    profile = LinkProfile(latency_ms=one_way_ms)
    conditioner = LinkConditioner("127.0.0.1", ws_port, profile, profile, seed=3)
    await conditioner.start()
    print(json.dumps({"port": conditioner.port}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    url = f"ws://127.0.0.1:{conditioner.port}"
    bots = [Bot(i, 0, ClientOptions(url=url), game, seed=i + 1) for i in range(2)]
    for bot in bots:
        await bot.join()
    scores: list[dict[int, float]] = [{} for _ in bots]
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        for bot, seen in zip(bots, scores, strict=True):
            bot.step()
            _scores(bot, seen)
        await asyncio.sleep(1 / FPS)
    reports = []
    for bot, seen in zip(bots, scores, strict=True):
        report = bot.report()
        reports.append(
            {
                "room_id": report.room_id,
                "joined": report.joined,
                "compared": report.compared,
                "exact": report.exact,
                "max_error": report.max_error,
                "error": report.error,
                "scores": seen,
            }
        )
        await bot.close()
    await conditioner.close()
    print(json.dumps({"bots": reports}), flush=True)


if __name__ == "__main__":
    one_way = float(sys.argv[3]) if len(sys.argv) > 3 else ONE_WAY_MS
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), one_way))
