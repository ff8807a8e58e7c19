"""One server tick over 10,000 replicated entities: astranet columns vs the naive esper way.

astranet tick: simulate on columns (``pos += vel * dt_s`` with bounces off the arena walls, 10 %
of entities moving), ``SnapshotHistory.capture``, then ``SnapshotFanout.encode_for`` for four
clients whose acked baselines are 1, 2, 3 and 4 snapshots old (four distinct bases, so four
real delta encodes; LZ4 applied when smaller).

naive tick: the same entities as esper components (``Position``, ``Velocity``, ``Heading``,
``Health``); an esper ``Processor`` loops over every entity in Python doing the same motion and
bounce, then the state is turned into one dict per entity, and ``msgpack.packb`` encodes that
list for each of the four clients (dicts built once per tick, packed per client).

Both run side by side in one process, interleaved, for ``--reps`` blocks of ``--ticks`` ticks;
we report medians of the per-tick times. Usage: ``python benchmarks/tick.py [--json]``.
Results: docs/benchmarks.md, section "Replication: server tick (CPU)".
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from dataclasses import dataclass

import esper
import msgpack
import numpy as np

from astranet.ecs import Angle, Bool, ColumnStore, Quantized, Schema, replicated
from astranet.replication import ClientBaseline, SnapshotFanout, SnapshotHistory

ENTITIES = 10_000
CLIENTS = 4
MOVING = 0.10
HALF_ARENA = 500.0
DT_S = 1.0 / 30


@replicated
class Body:
    pos = Quantized(-1024.0, 1024.0, 1 / 256, size=2)
    vel = Quantized(-64.0, 64.0, 1 / 256, size=2)
    heading = Angle(bits=10)
    hp = Quantized(0.0, 255.0, 1.0)
    alive = Bool()


SCHEMA = Schema(Body)


def _initial(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    pos = rng.uniform(-HALF_ARENA, HALF_ARENA, (ENTITIES, 2)).astype(np.float32)
    vel = np.zeros((ENTITIES, 2), dtype=np.float32)
    movers = rng.random(ENTITIES) < MOVING
    vel[movers] = rng.uniform(-20, 20, (int(movers.sum()), 2))
    return pos, vel


class AstranetRoom:
    """Columns + snapshot ring + fan-out, with four clients acking different baselines."""

    def __init__(self, rng: np.random.Generator) -> None:
        pos, vel = _initial(rng)
        self.store = ColumnStore(SCHEMA, capacity=ENTITIES)
        self.store.spawn(
            ENTITIES,
            Body__pos=pos,
            Body__vel=vel,
            Body__hp=100.0,
            Body__alive=True,
            Body__heading=rng.uniform(-3, 3, ENTITIES),
        )
        self.moving = np.flatnonzero(np.any(vel != 0, axis=1))
        self.history = SnapshotHistory(self.store)
        self.fanout = SnapshotFanout(SCHEMA, self.history)
        self.clients = [ClientBaseline() for _ in range(CLIENTS)]
        self.payload_bytes = 0
        for _ in range(CLIENTS + 2):  # fill the ring so every client has a base
            self.tick()

    def simulate(self) -> None:
        pos, vel = self.store["Body.pos"], self.store["Body.vel"]
        m = self.moving
        moved = pos[m] + vel[m] * DT_S
        out = np.abs(moved) > HALF_ARENA
        vel[m] = np.where(out, -vel[m], vel[m])  # bounce off the walls
        pos[m] = np.clip(moved, -HALF_ARENA, HALF_ARENA)

    def tick(self) -> None:
        self.simulate()
        snap = self.history.capture(0)
        self.fanout.begin_tick(snap)
        self.payload_bytes = 0
        for client in self.clients:
            self.payload_bytes += len(self.fanout.encode_for(client).payload)

    def ack_distinct_bases(self) -> None:
        """Client k acks the snapshot k+1 behind the latest (outside the timed region)."""
        latest = self.history.latest
        assert latest is not None
        for k, client in enumerate(self.clients):
            # Client k's ack lags k ticks, so next tick's bases are 1..4 snapshots old.
            assert client.ack(latest.id - k) and client.acked_id == latest.id - k


@dataclass(slots=True)
class Position:
    x: float
    y: float


@dataclass(slots=True)
class Velocity:
    x: float
    y: float


@dataclass(slots=True)
class Heading:
    angle: float


@dataclass(slots=True)
class Health:
    hp: int
    alive: bool


class MoveProcessor(esper.Processor):
    def process(self, dt_s: float) -> None:
        for _, (p, v) in esper.get_components(Position, Velocity):
            p.x += v.x * dt_s
            p.y += v.y * dt_s
            if abs(p.x) > HALF_ARENA:
                v.x, p.x = -v.x, max(-HALF_ARENA, min(HALF_ARENA, p.x))
            if abs(p.y) > HALF_ARENA:
                v.y, p.y = -v.y, max(-HALF_ARENA, min(HALF_ARENA, p.y))


class NaiveRoom:
    """esper components, a per-entity Python processor, msgpack of a dict per entity."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.world = f"naive-{uuid.uuid4().hex}"
        esper.switch_world(self.world)
        pos, vel = _initial(rng)
        for (px, py), (vx, vy) in zip(pos.tolist(), vel.tolist(), strict=True):
            esper.create_entity(Position(px, py), Velocity(vx, vy), Heading(0.0), Health(100, True))
        esper.add_processor(MoveProcessor())
        self.payload_bytes = 0

    def tick(self) -> None:
        esper.switch_world(self.world)
        esper.process(DT_S)
        rows = [
            {
                "id": e,
                "x": p.x,
                "y": p.y,
                "vx": v.x,
                "vy": v.y,
                "heading": h.angle,
                "hp": hp.hp,
                "alive": hp.alive,
            }
            for e, (p, v, h, hp) in esper.get_components(Position, Velocity, Heading, Health)
        ]
        self.payload_bytes = sum(len(msgpack.packb(rows)) for _ in range(CLIENTS))


def measure(ticks: int, reps: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    room, naive = AstranetRoom(rng), NaiveRoom(rng)
    fast_ms: list[float] = []
    slow_ms: list[float] = []
    for _ in range(reps):
        for _ in range(ticks):
            room.ack_distinct_bases()
            start = time.perf_counter()
            room.tick()
            fast_ms.append((time.perf_counter() - start) * 1000)
        for _ in range(max(1, ticks // 4)):  # the naive tick is slow; fewer samples suffice
            start = time.perf_counter()
            naive.tick()
            slow_ms.append((time.perf_counter() - start) * 1000)
    astranet_ms, naive_ms = statistics.median(fast_ms), statistics.median(slow_ms)
    return {
        "entities": ENTITIES,
        "clients": CLIENTS,
        "astranet_ms": astranet_ms,
        "naive_ms": naive_ms,
        "speedup": naive_ms / astranet_ms,
        "astranet_p90_ms": float(np.percentile(fast_ms, 90)),
        "astranet_bytes_per_tick": room.payload_bytes,
        "naive_bytes_per_tick": naive.payload_bytes,
        "astranet_samples": len(fast_ms),
        "naive_samples": len(slow_ms),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=40, help="astranet ticks per block")
    parser.add_argument("--reps", type=int, default=5, help="interleaved blocks")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = measure(args.ticks, args.reps, args.seed)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(
                f"{key:>24}: {value:,.3f}" if isinstance(value, float) else f"{key:>24}: {value:,}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
