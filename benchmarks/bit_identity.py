"""Bit-identity digest of the server's replication: the check behind "same bytes" in a CPU pass.

Why: the capacity passes (issue 12) rewrite hot paths -- capture, the codecs, the fan-out, input
ingestion, the example games' systems -- and promise the same payloads. The unit tests compare
each fast path with its reference; this script compares *whole runs*: it drives real
:class:`~astranet.server.room.Room` objects (no sockets) through seeded scenarios and hashes
everything a client would receive and everything the room holds after every tick.

What is hashed, per scenario: for every player and every snapshot offered to it, the snapshot
id, server tick, base id, compression flag, payload bytes and ``last_input_seq`` (per player, so
a change in batching order does not matter, a change in any byte does); after every tick, the
store's net ids and every column's bytes. Acks follow a seeded pattern (most players ack the
newest snapshot, some one or two behind, some drop one now and then), so shared bases, distinct
encodes and full snapshots all occur.

Scenarios: the co-op game (wave 1, 50 and 200 extra drones; players who leave and rejoin), the
cubes game (N=100/1000, 10 % and all moving), interest-managed dots (budgeted encoder), and
multi-room runs through :class:`~astranet.systems.snapshot_replication.ReplicationBatch` (the
server tick's batched encode) with chunks of 3 and 16 rooms.

Usage: ``python benchmarks/bit_identity.py [--ticks 120] [--only coop_wave1,...] [--json]``;
run it on two commits and compare the printed digests (``TOTAL`` covers every scenario).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import struct
import sys
import time
from collections.abc import Callable, Iterable

import numpy as np

from astranet.examples import cubes as cubes_game
from astranet.examples.coop import DRONE
from astranet.examples.coop import game as coop_game
from astranet.examples.coop.brain import BotBrain, Personality
from astranet.examples.coop.components import snap_pos
from astranet.examples.dots import Dots
from astranet.examples.dots import encode_input as dots_input
from astranet.replication.interest import SpatialGrid
from astranet.server.room import Player, Room
from astranet.systems.snapshot_replication import ReplicationBatch

PLAYERS = 4
_HEAD = struct.Struct("<qqq?q")


class HashingSink:
    """A connected client as the room sees it: hashes what it is offered, acks by pattern."""

    def __init__(self, player: Player, rng: random.Random) -> None:
        self.player = player
        self.rng = rng
        self.digest = hashlib.sha256()
        self.offered: list[int] = []  # snapshot ids, newest last
        self.wants_events = True  # reliable events are hashed too (Player.deliver)

    def offer_snapshot(self, snapshot: object, last_input_seq: int | None) -> None:
        s = snapshot  # EncodedSnapshot
        base = -1 if s.base_id is None else s.base_id  # type: ignore[attr-defined]
        seq = -1 if last_input_seq is None else last_input_seq
        head = _HEAD.pack(s.id, s.server_tick, base, s.compressed, seq)  # type: ignore[attr-defined]
        self.digest.update(head)
        self.digest.update(s.payload)  # type: ignore[attr-defined]
        self.offered.append(s.id)  # type: ignore[attr-defined]

    def offer_events(self, message: object) -> None:
        self.digest.update(repr(message).encode())

    def ack(self) -> None:
        """Ack the newest snapshot (70 %), one or two behind (25 %), or nothing (5 %)."""
        if not self.offered:
            return
        roll = self.rng.random()
        if roll < 0.05:
            return
        lag = 0 if roll < 0.75 else (1 if roll < 0.9 else 2)
        self.player.baseline.ack(self.offered[max(0, len(self.offered) - 1 - lag)])


def hash_store(room: Room, digest: hashlib._Hash) -> None:
    store = room.store
    digest.update(np.ascontiguousarray(store.net_ids).tobytes())
    for column in store.columns():
        digest.update(np.ascontiguousarray(column).tobytes())


class Scenario:
    """Rooms, their players' sinks and an input source per player."""

    def __init__(self, rooms: list[Room], inputs: Callable[[Room, Player, int], bytes | None]):
        self.rooms = rooms
        self.inputs = inputs
        self.sinks: dict[tuple[str, str], HashingSink] = {}
        self.store_digest = hashlib.sha256()
        self.seq = 0

    def connect(self, room: Room, player: Player, seed: int) -> None:
        sink = HashingSink(player, random.Random(seed))
        self.sinks[(room.room_id, player.player_id)] = sink
        player.session = sink

    def run(self, ticks: int, batch: ReplicationBatch | None, churn: bool = False) -> str:
        for tick in range(1, ticks + 1):
            for room in self.rooms:
                for player in list(room.players.values()):
                    sink = player.session
                    if isinstance(sink, HashingSink):
                        sink.ack()
                    blob = self.inputs(room, player, tick)
                    if blob is not None and player.session is not None:
                        self.seq += 1
                        player.inputs.push(self.seq, blob)
                if churn and tick % 40 == 20:  # a player drops (seat held), another comes back
                    self._churn(room, tick)
            for room in self.rooms:
                room.step(tick, batch)
                if batch is not None and len(batch) >= batch.max_rooms:
                    batch.flush()
            if batch is not None:
                batch.flush()
            for room in self.rooms:
                hash_store(room, self.store_digest)
        total = hashlib.sha256(self.store_digest.digest())
        for key in sorted(self.sinks):
            total.update(repr(key).encode())
            total.update(self.sinks[key].digest.digest())
        for room in self.rooms:
            room.close()
        return total.hexdigest()[:16]

    def _churn(self, room: Room, tick: int) -> None:
        players = list(room.players.values())
        leaving = players[tick // 40 % len(players)]
        if leaving.session is not None:
            leaving.session = None
            leaving.baseline.reset()  # as the server does when the connection drops
        else:
            self.connect(room, leaving, tick)
        for player in players:  # a held seat that is back gets a fresh sink
            if player.session is None and player is not leaving:
                self.connect(room, player, tick + 1)


def coop_rooms(count: int, drones: int, seed: int) -> Scenario:
    brains: dict[tuple[str, str], BotBrain] = {}
    rooms = []
    for r in range(count):
        room = Room(f"D{seed:03d}{r:04d}", "bench", "coop", coop_game)
        rooms.append(room)
        for i in range(PLAYERS):
            player = room.add_player(f"p{i}", b"")
            brain = BotBrain(Personality.draw(random.Random(seed * 100 + r * 10 + i)), seed + i)
            brain.bind(room.store, player.net_id)
            brains[(room.room_id, player.player_id)] = brain
        if drones:
            rng = np.random.default_rng(seed + r)
            angle = rng.uniform(0, 2 * math.pi, drones)
            radius = rng.uniform(25, 55, drones)
            ring = snap_pos(np.stack([np.cos(angle), np.sin(angle)], axis=1) * radius[:, None])
            room.store.spawn(drones, Body__pos=ring, Body__kind=DRONE, Health__hp=3)

    def inputs(room: Room, player: Player, tick: int) -> bytes:
        return brains[(room.room_id, player.player_id)]()

    scenario = Scenario(rooms, inputs)
    for room in rooms:
        for i, player in enumerate(room.players.values()):
            scenario.connect(room, player, seed * 1000 + i)
    return scenario


def cubes_rooms(count: int, entities: int, moving: float, seed: int) -> Scenario:
    game = cubes_game.Cubes(entities, moving)
    rooms = [Room(f"C{seed:03d}{r:04d}", "bench", "cubes", game) for r in range(count)]
    rng = random.Random(seed)
    directions: dict[tuple[str, str], tuple[float, float]] = {}
    for room in rooms:
        for i in range(PLAYERS):
            room.add_player(f"p{i}", b"")

    def inputs(room: Room, player: Player, tick: int) -> bytes | None:
        key = (room.room_id, player.player_id)
        if tick % 20 == 1 or key not in directions:
            a = rng.uniform(0, 2 * math.pi)
            directions[key] = (math.cos(a), math.sin(a))
        if rng.random() < 0.03:  # a lost input now and then: the queue runs dry
            return None
        return cubes_game.encode_input(*directions[key])

    scenario = Scenario(rooms, inputs)
    for room in rooms:
        for i, player in enumerate(room.players.values()):
            scenario.connect(room, player, seed * 1000 + i)
    return scenario


class _NearbyDots(Dots):
    """Dots seen within a radius under a byte budget: the budgeted (interest) encoder."""

    snapshot_budget_bytes_per_s = 6000

    def relevance(self, sim, net_id: int):  # type: ignore[no-untyped-def]
        store = sim.store
        grid = SpatialGrid(store["Body.pos"], cell_size=8.0)
        me = store["Body.pos"][store.rows([net_id])][0]
        return grid.relevance(me, 8.0, near_radius=2.0)


def dots_interest(seed: int) -> Scenario:
    game = _NearbyDots()
    room = Room(f"I{seed:07d}", "bench", "dots", game)
    for i in range(PLAYERS):
        room.add_player(f"p{i}", b"")
    rng = random.Random(seed)

    def inputs(room: Room, player: Player, tick: int) -> bytes:
        return dots_input(rng.uniform(-1, 1), rng.uniform(-1, 1))

    scenario = Scenario([room], inputs)
    for i, player in enumerate(room.players.values()):
        scenario.connect(room, player, seed * 1000 + i)
    return scenario


def scenarios(ticks: int) -> Iterable[tuple[str, Callable[[], str]]]:
    yield "coop_wave1", lambda: coop_rooms(1, 0, 1).run(ticks, None)
    yield "coop_wave1_churn", lambda: coop_rooms(1, 0, 2).run(ticks, None, churn=True)
    yield "coop_50", lambda: coop_rooms(1, 50, 3).run(ticks, None)
    yield "coop_200", lambda: coop_rooms(1, 200, 4).run(ticks, None)
    yield "coop_batch3", lambda: coop_rooms(5, 0, 5).run(ticks, ReplicationBatch(max_rooms=3))
    yield "cubes_100_10", lambda: cubes_rooms(1, 100, 0.1, 6).run(ticks, None)
    yield "cubes_100_all", lambda: cubes_rooms(1, 100, 1.0, 7).run(ticks, None)
    yield "cubes_1000_10", lambda: cubes_rooms(1, 1000, 0.1, 8).run(ticks, None)
    yield "cubes_1000_all", lambda: cubes_rooms(1, 1000, 1.0, 9).run(ticks, None)
    yield "cubes_churn", lambda: cubes_rooms(2, 100, 0.1, 10).run(ticks, None, churn=True)
    yield (
        "fanout_batch3",
        lambda: cubes_rooms(7, 100, 0.1, 11).run(ticks, ReplicationBatch(max_rooms=3)),
    )
    yield (
        "fanout_batch16",
        lambda: cubes_rooms(20, 100, 0.1, 12).run(ticks, ReplicationBatch(max_rooms=16)),
    )
    yield (
        "fanout_batch16_churn",
        lambda: cubes_rooms(20, 100, 0.1, 13).run(ticks, ReplicationBatch(max_rooms=16), True),
    )
    yield "dots_interest", lambda: dots_interest(14).run(ticks, None)
    yield "dots_interest_churn", lambda: dots_interest(15).run(ticks, None, churn=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=120, help="ticks per scenario")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args(argv)
    only = {name for name in args.only.split(",") if name}
    digests: dict[str, str] = {}
    total = hashlib.sha256()
    started = time.perf_counter()
    for name, run in scenarios(args.ticks):
        if only and name not in only:
            continue
        digests[name] = run()
        total.update(f"{name}={digests[name]};".encode())
        print(f"{name:<24} {digests[name]}", file=sys.stderr if args.json else sys.stdout)
    digests["TOTAL"] = total.hexdigest()[:16]
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps({"ticks": args.ticks, "seconds": round(seconds, 1), "digests": digests}))
    else:
        print(f"{'TOTAL':<24} {digests['TOTAL']}  ({seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
