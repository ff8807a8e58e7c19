"""One server tick of a cubes room (astranet.examples.cubes) with 4 connected players.

The room of the Colyseus side-by-side (benchmarks/vs_colyseus.py): ``--entities`` scenery cubes
(default 100), ``--moving`` of them moving (default 0.1), plus one avatar per player. Each
player is "connected" through a sink that keeps the snapshot it was offered and acks it before
the next tick (the room's clients share one delta base, as on a quiet network). Per tick,
outside the timing, every player queues one input (a direction that changes every 20 ticks,
seeded); then ``Room.step`` is timed: input ingestion, the bounce system, capture and the
fan-out of one payload to four players.

Reported: median and p90 room tick in microseconds (``--clock cpu``, the default: this
process's CPU time, so a shared machine's scheduling does not count; ``wall`` for
perf_counter), the median wall time per system (Room.step's own timing) and the delta payload
bytes of the last tick.
Usage: ``python benchmarks/cubes_room.py [--ticks 200] [--reps 5] [--json]``.
Results: docs/benchmarks.md, section "Room cost and inputs timed to the tick".
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable

from _roomsink import AckingSink

from astranet.examples.cubes import Cubes, encode_input
from astranet.server.room import Room

PLAYERS = 4


def measure(
    entities: int, moving: float, ticks: int, reps: int, seed: int, clock: Callable[[], float]
) -> dict[str, object]:
    game = Cubes(entities, moving)
    tick_us: list[float] = []
    system_us: dict[str, list[float]] = {}
    last_payload = 0
    for rep in range(reps):
        room = Room(f"C{seed + rep:07d}", "bench", "cubes", game)
        rng = random.Random(seed + rep)
        sinks = []
        for i in range(PLAYERS):
            player = room.add_player(f"p{i}", b"")
            sink = AckingSink(player)
            player.session = sink
            sinks.append(sink)
        seq = 0
        directions = [(0.0, 0.0)] * PLAYERS
        for tick in range(1, ticks + 1):
            for sink in sinks:
                sink.ack()
            if tick % 20 == 1:
                directions = [
                    (math.cos(a), math.sin(a))
                    for a in (rng.uniform(0, 2 * math.pi) for _ in range(PLAYERS))
                ]
            for sink, (dx, dy) in zip(sinks, directions, strict=True):
                seq += 1
                sink.player.inputs.push(seq, encode_input(dx, dy))
            started = clock()
            per_system = room.step(tick)
            tick_us.append((clock() - started) * 1e6)
            for name, spent in per_system.items():
                system_us.setdefault(name, []).append(spent * 1e6)
        last_payload = sinks[0].last_payload
        room.close()
    return {
        "entities": entities,
        "moving": moving,
        "players": PLAYERS,
        "tick_us": statistics.median(tick_us),
        "tick_p90_us": statistics.quantiles(tick_us, n=10)[-1],
        "systems_us": {name: statistics.median(v) for name, v in system_us.items()},
        "delta_bytes": last_payload,
        "samples": len(tick_us),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=100)
    parser.add_argument("--moving", type=float, default=0.1)
    parser.add_argument("--ticks", type=int, default=200, help="ticks per repeat")
    parser.add_argument("--reps", type=int, default=5, help="fresh rooms")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    result = measure(args.entities, args.moving, args.ticks, args.reps, args.seed, clock)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"cubes Room.step, N={args.entities} ({args.moving:.0%} moving), {PLAYERS} players, "
        f"{args.ticks} ticks x {args.reps} reps: median {result['tick_us']:.1f} us, "
        f"p90 {result['tick_p90_us']:.1f} us, delta {result['delta_bytes']} B"
    )
    for name, us in result["systems_us"].items():  # type: ignore[union-attr]
        print(f"  {name:<28} {us:7.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
