"""How often the room's snapshot fan-out shares one encode between its clients.

An in-process server (the dots game, 127.0.0.1, free ports) and one room of 4 ``GameClient`` +
``ClientWorld`` players (bot input, 60 fps frames) play for ``--duration`` seconds, once with
inputs timed to the tick (the client's default) and once without. The room's
``SnapshotFanout`` encodes one payload per distinct (acked base, visibility) per tick; we count
deliveries (one per client per tick) and actual encodes: ``clients_per_encode`` is 4 when every
client acked the same snapshot, 1 when none did.

Usage: ``python benchmarks/fanout_hit.py [--duration 4] [--json]``.
Results: docs/benchmarks.md, section "Room cost and inputs timed to the tick".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import esper

from astranet.client import ClientOptions, ClientWorld, GameClient, run_frames
from astranet.client.demo import BotInput
from astranet.examples.dots import encode_input
from astranet.game import load_game
from astranet.server.app import GameServer
from astranet.server.config import parse_config

GAME = "astranet.examples.dots:game"
PLAYERS = 4


async def measure(duration_s: float, pacing: bool) -> dict[str, object]:
    game = load_game(GAME)
    config = parse_config(
        ["--game", GAME, "--host", "127.0.0.1", "--ws-port", "0", "--http-port", "0"], {}
    )
    server = GameServer(config, game)
    await server.start()
    clients: list[tuple[GameClient, ClientWorld]] = []
    try:
        url = f"ws://127.0.0.1:{server.ws_port}"
        for seed in range(1, PLAYERS + 1):
            client = GameClient(ClientOptions(url=url, seed=seed, input_pacing=pacing))
            accepted = await client.connect()
            world = ClientWorld(
                game, client, BotInput(encode_input, seed=seed), tick_hz=accepted.tick_hz
            )
            clients.append((client, world))
        (room,) = server.host.rooms.values()
        fanout = room.fanout
        deliveries = 0
        encode_for = fanout.encode_for

        def counting(*args: object, **kwargs: object) -> object:
            nonlocal deliveries
            deliveries += 1
            return encode_for(*args, **kwargs)  # type: ignore[arg-type]

        fanout.encode_for = counting  # type: ignore[method-assign]
        encodes_before = fanout.encodes
        await asyncio.gather(*(run_frames(w, duration_s=duration_s) for _, w in clients))
        encodes = fanout.encodes - encodes_before
        return {
            "input_pacing": pacing,
            "deliveries": deliveries,
            "encodes": encodes,
            "clients_per_encode": deliveries / max(1, encodes),
        }
    finally:
        for client, world in clients:
            await client.close()
            world.close()
        await server.shutdown()
        esper.switch_world("default")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of play per run")
    parser.add_argument("--json", action="store_true", help="print one JSON array")
    args = parser.parse_args(argv)
    results = [asyncio.run(measure(args.duration, pacing)) for pacing in (True, False)]
    if args.json:
        print(json.dumps(results))
        return 0
    for r in results:
        print(
            f"input_pacing={r['input_pacing']!s:5}  {r['deliveries']} deliveries, "
            f"{r['encodes']} encodes: {r['clients_per_encode']:.2f} clients per encode"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
