"""One server tick of the coop example game at 50 / 200 / 600 drones with 4 players firing.

Per repeat a fresh room is built: the team entity, 4 players near the centre, and N drones on
a ring 25..55 units out (so they chase for the whole run instead of exploding at once). Each
tick the 4 scripted players aim at their nearest drone and fire whenever the weapon is ready
(``fire_ready``), the commands go through ``check_input`` + ``apply_input`` like the server's
InputIngestionSystem, then the four coop systems run. We time that whole simulation tick and
each system, then (outside the simulation timing) capture a snapshot and encode it for one
client that acked the previous tick, to report delta and full payload bytes.

Reported per size: median and p90 tick ms (simulation only), median ms per system, median
capture+encode ms, delta and full payload bytes at the last tick, drones/projectiles left.
Usage: ``python benchmarks/coop_tick.py [--ticks 60] [--reps 5] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import uuid

import esper
import numpy as np

from astranet.ecs import ColumnStore
from astranet.examples.coop import DRONE, PROJECTILE, TEAM, Command, fire_ready, game
from astranet.examples.coop.components import snap_pos
from astranet.examples.coop.input import STAND_STILL
from astranet.game import SimContext
from astranet.replication import ClientBaseline, SnapshotFanout, SnapshotHistory

SIZES = (50, 200, 600)
PLAYERS = 4
DT_S = 1.0 / 30


class BenchRoom:
    """A coop room stepped like the server does, with a replication client on the side."""

    def __init__(self, drones: int, seed: int) -> None:
        self.world = f"coop-bench-{uuid.uuid4().hex}"
        esper.switch_world(self.world)
        self.sim = SimContext(ColumnStore(game.schema, capacity=1024), 0, DT_S, "BENCHMRK")
        game.setup(self.sim)
        self.players = [game.spawn_player(self.sim, f"p{i}") for i in range(PLAYERS)]
        rng = np.random.default_rng(seed)
        angle = rng.uniform(0, 2 * math.pi, drones)
        radius = rng.uniform(25, 55, drones)
        ring = snap_pos(np.stack([np.cos(angle), np.sin(angle)], axis=1) * radius[:, None])
        store = self.sim.store
        store.spawn(drones, Body__pos=ring, Body__kind=DRONE, Health__hp=3)
        store["Team.wave"][np.flatnonzero(store["Body.kind"] == TEAM)] = 1
        self.processors = list(esper._processors)  # private, read-only: per-system timing
        self.history = SnapshotHistory(store)
        self.fanout = SnapshotFanout(game.schema, self.history)
        self.client = ClientBaseline()
        self.delta_bytes = 0

    def commands(self) -> dict[int, Command]:
        store = self.sim.store
        drones = np.flatnonzero(store["Body.kind"] == DRONE)
        commands = {}
        for i, net_id in enumerate(self.players):  # 4 players: per-player Python is fine
            pos = store["Body.pos"][store.rows([net_id])[0]].astype(np.float64)
            aim = 0
            if len(drones):
                offsets = store["Body.pos"][drones].astype(np.float64) - pos
                nearest = offsets[np.einsum("ij,ij->i", offsets, offsets).argmin()]
                turns = math.atan2(nearest[1], nearest[0]) / (2 * math.pi)
                aim = round((turns - math.floor(turns)) * 256) % 256
            phase = self.sim.tick / 40 + i * math.pi / 2
            commands[net_id] = Command(
                int(60 * math.cos(phase)), int(60 * math.sin(phase)), aim, fire_ready(store, net_id)
            )
        return commands

    def tick(self) -> tuple[float, dict[str, float], float]:
        """One tick; returns (simulation s, s per system, capture+encode s)."""
        esper.switch_world(self.world)
        self.sim.tick += 1
        commands = self.commands()  # what the clients sent: not server work, not timed
        per_system: dict[str, float] = {}
        started = time.perf_counter()
        for net_id, command in commands.items():
            if game.check_input(self.sim, net_id, command) is not None:
                command = STAND_STILL
            game.apply_input(self.sim, net_id, command)
        per_system["apply_input"] = time.perf_counter() - started
        for processor in self.processors:
            t0 = time.perf_counter()
            processor.process(self.sim)
            per_system[type(processor).__name__] = time.perf_counter() - t0
        simulated = time.perf_counter() - started
        t0 = time.perf_counter()
        snapshot = self.history.capture(self.sim.tick)
        self.fanout.begin_tick(snapshot)
        encoded = self.fanout.encode_for(self.client)
        replicated = time.perf_counter() - t0
        self.client.ack(encoded.id)
        self.delta_bytes = len(encoded.payload)
        return simulated, per_system, replicated

    def full_bytes(self) -> int:
        return len(self.fanout.encode_for(ClientBaseline()).payload)

    def count(self, kind: int) -> int:
        return int((self.sim.store["Body.kind"] == kind).sum())

    def close(self) -> None:
        esper.switch_world("default")
        esper.delete_world(self.world)


def measure(drones: int, ticks: int, reps: int, seed: int) -> dict[str, float | int | dict]:
    tick_ms: list[float] = []
    replicate_ms: list[float] = []
    system_ms: dict[str, list[float]] = {}
    last: dict[str, int] = {}
    for rep in range(reps):
        room = BenchRoom(drones, seed + rep)
        for _ in range(ticks):
            simulated, per_system, replicated = room.tick()
            tick_ms.append(simulated * 1000)
            replicate_ms.append(replicated * 1000)
            for name, seconds in per_system.items():
                system_ms.setdefault(name, []).append(seconds * 1000)
        last = {
            "delta_bytes": room.delta_bytes,
            "full_bytes": room.full_bytes(),
            "drones_left": room.count(DRONE),
            "projectiles": room.count(PROJECTILE),
        }
        room.close()
    return {
        "drones": drones,
        "players": PLAYERS,
        "tick_ms": statistics.median(tick_ms),
        "tick_p90_ms": float(np.percentile(tick_ms, 90)),
        "systems_ms": {name: statistics.median(v) for name, v in system_ms.items()},
        "capture_encode_ms": statistics.median(replicate_ms),
        **last,
        "samples": len(tick_ms),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=60, help="ticks per repeat")
    parser.add_argument("--reps", type=int, default=5, help="fresh rooms per size")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON array")
    args = parser.parse_args(argv)
    results = [measure(n, args.ticks, args.reps, args.seed) for n in SIZES]
    if args.json:
        print(json.dumps(results))
        return 0
    print(
        f"coop tick, {PLAYERS} players firing, {args.ticks} ticks x {args.reps} reps "
        "(medians; simulation = inputs + 4 systems)"
    )
    print(
        f"{'drones':>6} {'tick ms':>8} {'p90 ms':>7} {'chase':>6} {'shots':>6} {'combat':>7} "
        f"{'wave':>6} {'cap+enc':>8} {'delta B':>8} {'full B':>7} {'left':>5}"
    )
    for r in results:
        s = r["systems_ms"]
        print(
            f"{r['drones']:>6} {r['tick_ms']:>8.3f} {r['tick_p90_ms']:>7.3f} "
            f"{s['DroneSystem']:>6.3f} {s['ProjectileSystem']:>6.3f} "
            f"{s['CombatSystem']:>7.3f} {s['WaveSystem']:>6.3f} "
            f"{r['capture_encode_ms']:>8.3f} {r['delta_bytes']:>8} {r['full_bytes']:>7} "
            f"{r['drones_left']:>5}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
