"""``astranet-client``: a bot that joins a room, plays, and prints one line per event.

Usage::

    astranet-client [--url ws://127.0.0.1:8788] [--region us-east] [--game-mode coop]
                    [--room ROOMID] [--duration 10] [--every 30] [--game
                    astranet.examples.coop:game]
                    [--seed N]

``AW_WS_URL`` and ``AW_REGION`` set the defaults of ``--url`` and ``--region`` (WIRE.md, command
line section; when ``AW_REGION`` is the server's list of regions, the first one). Lines:
``connected``, ``joined room/player/entity``, every Nth snapshot with RTT and payload size,
``disconnected``/``reconnecting``/``reconnected``, and a summary.
Exit status: 0 after ``--duration`` seconds; 2 when it cannot connect (wrong URL, refused);
3 when the server refuses the join (unknown region, room not found or full); 4 when the session
ends early (kicked, gave up reconnecting); 64 for a bad ``--game``. Never a traceback.

The bot steers with ``MODULE.encode_input(dx, dy)`` of the game's module (dots and co-op have
one): a random walk that changes direction about once a second, at 98 % speed (full-speed
diagonals would round past the server's speed check).
Limits: one player per process. Benchmark: benchmarks/netcode_feel.py uses the same bot.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import math
import os
import random
import sys
from collections.abc import Callable, Sequence

from astranet.client.cli import EXIT_CONNECT, EXIT_JOIN, EXIT_OK, EXIT_SESSION, run_main
from astranet.client.connection import GameClient
from astranet.client.events import ClientEvent, ClientOptions, EventKind, region_from_env
from astranet.client.world import ClientWorld
from astranet.errors import (
    ConfigurationError,
    ConnectionClosed,
    ProtocolError,
)
from astranet.game import load_game

__all__ = ["BotInput", "main", "run"]

EXIT_USAGE = 64
PROG = "astranet-client"
FRAME_HZ = 60.0  # the bot "renders" at 60 fps


class BotInput:
    """A seeded random walk: a new heading every ``turn_every`` inputs (30 = 1 s at 30 Hz)."""

    def __init__(
        self,
        encode: Callable[[float, float], bytes],
        seed: int = 0,
        turn_every: int = 30,
        speed: float = 0.98,
    ) -> None:
        self.encode = encode
        self.rng = random.Random(seed)
        self.turn_every = turn_every
        self.speed = speed
        self.count = 0
        self.heading = self.rng.uniform(0, 2 * math.pi)

    def __call__(self) -> bytes:
        if self.count % self.turn_every == 0:
            self.heading = self.rng.uniform(0, 2 * math.pi)
        self.count += 1
        return self.encode(self.speed * math.cos(self.heading), self.speed * math.sin(self.heading))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("AW_WS_URL", "ws://127.0.0.1:8788"))
    parser.add_argument("--region", default=region_from_env())
    parser.add_argument("--game-mode", default="coop")
    parser.add_argument("--room", default=None, help="JoinRoom this room id")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to play")
    parser.add_argument("--every", type=int, default=30, help="print every Nth snapshot")
    parser.add_argument(
        "--game",
        default="astranet.examples.coop:game",
        help="MODULE:ATTR of the game the server plays",
    )
    parser.add_argument("--seed", type=int, default=None)
    return parser


def _describe(event: ClientEvent) -> str:
    kind = event.kind
    if kind is EventKind.JOINED:
        return f"joined room {event.room_id} player {event.player_id} entity {event.entity}"
    if kind is EventKind.RECONNECTING:
        return f"reconnecting: attempt {event.attempt} in {event.delay_s:.2f} s ({event.detail})"
    if kind is EventKind.RECONNECTED:
        return (
            f"reconnected to room {event.room_id} as entity {event.entity} after"
            f" {event.downtime_s:.2f} s"
        )
    return f"{kind.value} {event.detail}".rstrip()


async def run(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    """Play for ``args.duration`` seconds; returns the exit status."""
    try:
        game = load_game(args.game)
        encode = importlib.import_module(args.game.partition(":")[0]).encode_input
    except (ConfigurationError, AttributeError) as exc:
        out(f"{PROG}: --game {args.game}: {exc}")
        return EXIT_USAGE
    options = ClientOptions(
        url=args.url,
        region=args.region,
        game_mode=args.game_mode,
        room_id=args.room,
        seed=args.seed,
        schema=game.schema.fingerprint,
    )
    client = GameClient(options, on_event=lambda event: out(_describe(event)))
    try:
        accepted = await client.connect()
    except ConnectionClosed as exc:
        out(f"{PROG}: {exc.reason}")
        return EXIT_CONNECT
    except ProtocolError as exc:
        out(f"{PROG}: join refused: {exc.code}: {exc.message}")
        return EXIT_JOIN
    world = ClientWorld(
        game, client, BotInput(encode, seed=args.seed or 0), tick_hz=accepted.tick_hz
    )
    try:
        status = await _play(world, client, args, out)
    finally:
        await client.close()
        world.close()
    return status


async def _play(
    world: ClientWorld, client: GameClient, args: argparse.Namespace, out: Callable[[str], None]
) -> int:
    started_ms = client.now_ms()
    printed = 0
    while client.now_ms() - started_ms < args.duration * 1000.0:
        world.step()
        applied = world.receive.applied_total
        if applied // max(1, args.every) > printed:
            printed = applied // max(1, args.every)
            rtt = client.clock_estimate(client.now_ms()).rtt_ms
            stats = client.stats
            size = stats.snapshot_bytes / max(1, stats.snapshots)
            rtt_text = f"{rtt:.1f} ms" if rtt is not None else "n/a"
            latest = world.replica.latest
            tick = latest.tick if latest is not None else 0
            out(f"snapshot {applied}: tick {tick} rtt {rtt_text} size {size:.0f} B")
        if client.error is not None:
            out(f"{PROG}: session ended: {client.error}")
            return EXIT_SESSION
        await asyncio.sleep(1.0 / FRAME_HZ)  # frame pacing
    recon = world.reconciliation.stats
    out(
        f"done: {world.receive.applied_total} snapshots, {recon.exact}/{recon.compared} exact"
        f" predictions, max error {recon.max_error:g}, {recon.rewinds} corrections,"
        f" {world.interpolation.starvations} starvations, {client.stats.reconnects} reconnects"
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_main(PROG, lambda: asyncio.run(run(args)))


if __name__ == "__main__":
    sys.exit(main())
