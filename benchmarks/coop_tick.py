"""One server tick of a coop room (astranet.server.room.Room) with 4 bot players connected.

Per repeat a fresh :class:`~astranet.server.room.Room` of the coop example game is built with 4
players, each driven by the library's bot brain (:class:`~astranet.examples.coop.brain.BotBrain`,
reading the server's store as if it were the client's prediction) and each "connected" through a
sink that keeps the snapshot it was offered and acks it before the next tick (so the room's
clients share one delta base, as on a quiet network). Per tick, outside the timing, every
player's next input is pushed into its queue like the session does; then ``Room.step`` is timed:
input ingestion, the four coop systems, capture and the fan-out of one payload to four players.

Scenarios: ``wave1`` is the game as it starts (the first wave's 8 drones, spawned by the game's
WaveSystem); ``50/200/600`` put that many drones on a ring 25..55 units out (wave 1, so no new
wave spawns while they chase); ``held`` is wave 1 with every player disconnected (seats held for
Resume), which the server does not step at all (WIRE A4); the script times that decision.

Reported per scenario: median and p90 room tick in microseconds (``--clock cpu``, the default:
this process's CPU time, so a shared machine's scheduling does not count; ``wall`` for
perf_counter), median wall time per system (Room.step's own timing), the delta payload bytes of
the last tick (what each client got) and a full snapshot's bytes.
Usage: ``python benchmarks/coop_tick.py [--ticks 60] [--reps 5] [--json]``.
Results: docs/benchmarks.md, section "Co-op game tick (the default game)".
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

import numpy as np
from _roomsink import AckingSink

from astranet.examples.coop import DRONE, PROJECTILE, game
from astranet.examples.coop.brain import BotBrain, Personality
from astranet.examples.coop.components import snap_pos
from astranet.replication import ClientBaseline
from astranet.server.room import Room

SCENARIOS: tuple[str | int, ...] = ("wave1", 50, 200, 600, "held")
PLAYERS = 4


class BenchRoom:
    """A real Room with 4 bot players whose inputs arrive one per tick."""

    def __init__(self, scenario: str | int, seed: int, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.room = Room(f"B{seed:07d}"[-8:], "bench", "coop", game)  # the id seeds the waves
        self.tick = 0
        self.seq = 0
        rng = np.random.default_rng(seed)
        players = [self.room.add_player(f"p{i}", b"") for i in range(PLAYERS)]
        self.brains = []
        self.sinks = []
        for i, player in enumerate(players):
            brain = BotBrain(Personality.draw(random.Random(seed + i)), seed + i)
            brain.bind(self.room.store, player.net_id)
            self.brains.append((player, brain))
            sink = AckingSink(player)
            self.sinks.append(sink)
            if scenario != "held":
                player.session = sink
        if isinstance(scenario, int):
            angle = rng.uniform(0, 2 * math.pi, scenario)
            radius = rng.uniform(25, 55, scenario)
            ring = snap_pos(np.stack([np.cos(angle), np.sin(angle)], axis=1) * radius[:, None])
            store = self.room.store
            store.spawn(scenario, Body__pos=ring, Body__kind=DRONE, Health__hp=3)
            store["Team.wave"][...] = np.where(store["Body.kind"] == 3, 1, 0)

    def step(self) -> tuple[float, dict[str, float]]:
        """Queue every player's input (untimed), then time one Room.step."""
        for sink in self.sinks:
            sink.ack()
        for player, brain in self.brains:  # what the clients sent: not server work
            if player.session is not None:  # a held seat sends nothing
                self.seq += 1
                player.inputs.push(self.seq, brain())
        self.tick += 1
        room = self.room
        started = self.clock()
        # As RoomHost.step_all: a room nobody is connected to is not stepped (WIRE A4).
        # (getattr: the same script measures the code before Room.attended existed.)
        attended = getattr(room, "attended", None)
        per_system = room.step(self.tick) if attended is None or attended() else {}
        return self.clock() - started, per_system

    def full_bytes(self) -> int:
        return len(self.room.fanout.encode_for(ClientBaseline()).payload)

    def count(self, kind: int) -> int:
        return int((self.room.store["Body.kind"] == kind).sum())


def measure(
    scenario: str | int, ticks: int, reps: int, seed: int, clock: Callable[[], float]
) -> dict[str, object]:
    tick_us: list[float] = []
    system_us: dict[str, list[float]] = {}
    last: dict[str, int] = {}
    for rep in range(reps):
        bench = BenchRoom(scenario, seed + rep, clock)
        for _ in range(ticks):
            seconds, per_system = bench.step()
            tick_us.append(seconds * 1e6)
            for name, spent in per_system.items():
                system_us.setdefault(name, []).append(spent * 1e6)
        connected = scenario != "held"
        last = {
            "delta_bytes": bench.sinks[0].last_payload if connected else 0,
            "full_bytes": bench.full_bytes() if connected else 0,
            "drones_left": bench.count(DRONE),
            "projectiles": bench.count(PROJECTILE),
        }
        bench.room.close()
    return {
        "scenario": str(scenario),
        "players": PLAYERS,
        "tick_us": statistics.median(tick_us),
        "tick_p90_us": float(np.percentile(tick_us, 90)),
        "systems_us": {name: statistics.median(v) for name, v in system_us.items()},
        **last,
        "samples": len(tick_us),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=60, help="ticks per repeat")
    parser.add_argument("--reps", type=int, default=5, help="fresh rooms per scenario")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="time the room tick in this process's CPU time (default: robust on a shared "
        "machine, where wall time also counts being descheduled) or wall time",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON array")
    args = parser.parse_args(argv)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    results = [measure(s, args.ticks, args.reps, args.seed, clock) for s in SCENARIOS]
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"coop Room.step, {PLAYERS} bot players, {args.ticks} ticks x {args.reps} reps (medians)")
    print(
        f"{'scenario':>8} {'tick us':>8} {'p90 us':>7} {'input':>6} {'chase':>6} {'shots':>6} "
        f"{'combat':>7} {'wave':>6} {'replic':>7} {'delta B':>8} {'full B':>7} {'left':>5}"
    )
    for r in results:
        s = r["systems_us"]

        def us(name: str, s: dict = s) -> float:
            return s.get(name, 0.0)

        print(
            f"{r['scenario']:>8} {r['tick_us']:>8.1f} {r['tick_p90_us']:>7.1f} "
            f"{us('InputIngestionSystem'):>6.1f} {us('DroneSystem'):>6.1f} "
            f"{us('ProjectileSystem'):>6.1f} {us('CombatSystem'):>7.1f} {us('WaveSystem'):>6.1f} "
            f"{us('SnapshotReplicationSystem'):>7.1f} {r['delta_bytes']:>8} {r['full_bytes']:>7} "
            f"{r['drones_left']:>5}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
