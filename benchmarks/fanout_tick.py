"""The server-wide tick in process: R cubes rooms x 4 clients whose acks arrive spread out.

What it measures: ``RoomHost.step_all``'s room loop without sockets -- every room's
``Room.step`` (input ingestion, the cubes bounce system, capture, the fan-out to 4 clients),
in this process's CPU time, median per tick over ``--ticks`` ticks, ``--reps`` times, plus the
fan-out's encodes per room tick and the payload bytes per delivered snapshot.

Ack model (simulated time, seeded; no sleeping): as benchmarks/server_load.py's load clients
with ``--input-phase spread``, each client sends one input per period at its own phase
``phase_i ~ U(0, period)``, and folds in an ack of the newest snapshot it has received. The
snapshot of tick ``t`` reaches the client ``delay ~ Exp(--jitter-ms)`` after the tick's
scheduled time (queueing behind the other rooms' steps, the kernel, a late tick), so a client
whose phase falls before that still acks ``t - 1``: a room's clients ack one or two snapshots
apart, which is what costs distinct delta encodes. ``--jitter-ms 0`` is the ideal (every
client acks the latest; one encode per room tick).

Batching (issue 12): ``--batch-rooms K`` steps the rooms as the server's tick does
(``RoomHost.step_all``): a :class:`~astranet.systems.snapshot_replication.ReplicationBatch`
encodes every K rooms' payloads in one pass, then they are delivered; 0 encodes and delivers
room by room (as before batching). ``replication_us`` is then the replication system's time
plus the batch flushes, per room; ``first_send_ms`` / ``last_send_ms`` are how long after the
tick started (wall clock) the first and the last snapshot of the tick were handed to a client.
``mean_send_ms`` is the mean of that wait over every snapshot of the tick.
``--compare`` alternates 0 and K in one process (``--reps`` each) and prints both and ratios.

Usage::

    .venv/bin/python benchmarks/fanout_tick.py [--rooms 50] [--jitter-ms 8] [--batch-rooms 16]
        [--compare] [--json]

Results: docs/benchmarks.md, section "Fan-out and the server tick (issue 12)".
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from astranet.examples.cubes import Cubes, encode_input
from astranet.replication import EncodedSnapshot
from astranet.server.room import Player, Room
from astranet.systems.snapshot_replication import BATCH_ROOMS, ReplicationBatch

PLAYERS = 4
TICK_HZ = 30
SENT: list[float] = []  # when this tick's snapshots were offered (perf_counter)


class AckingClient:
    """One connected client as the room sees it, acking on the spread-phase schedule."""

    def __init__(self, player: Player, phase_s: float) -> None:
        self.player = player
        self.phase_s = phase_s
        self.arrivals: list[tuple[float, int]] = []  # (arrival time, snapshot id), in order
        self.payload_bytes = 0
        self.snapshots = 0

    def offer_snapshot(self, snapshot: EncodedSnapshot, last_input_seq: int | None) -> None:
        self.pending = snapshot.id
        self.payload_bytes += len(snapshot.payload)
        self.snapshots += 1
        SENT.append(time.perf_counter())

    def received(self, at_s: float) -> None:
        self.arrivals.append((at_s, self.pending))
        del self.arrivals[:-8]

    def ack_newest_before(self, at_s: float) -> None:
        newest = [snapshot_id for arrived, snapshot_id in self.arrivals if arrived <= at_s]
        if newest:
            self.player.baseline.ack(newest[-1])


@dataclass(frozen=True, slots=True)
class TickResult:
    rooms: int
    jitter_ms: float
    batch_rooms: int
    tick_ms: float  # median CPU per server tick (all rooms)
    room_step_us: float  # tick_ms / rooms
    replication_us: float  # median replication (system + batch flushes) per room (wall)
    first_send_ms: float  # median, tick start -> first snapshot offered (wall)
    mean_send_ms: float  # median over ticks of the mean, tick start -> snapshot offered
    last_send_ms: float  # median, tick start -> last snapshot offered (wall)
    encodes_per_room_tick: float
    clients_per_encode: float
    payload_bytes_per_snapshot: float


def measure(
    rooms: int, ticks: int, jitter_ms: float, seed: int, batch_rooms: int = 0
) -> TickResult:
    game = Cubes(100, 0.1)
    rng = np.random.default_rng(seed)
    period = 1.0 / TICK_HZ
    built: list[tuple[Room, list[AckingClient]]] = []
    for r in range(rooms):
        room = Room(f"F{seed:03d}{r:05d}", "bench", "cubes", game, tick_hz=TICK_HZ)
        clients = []
        for i in range(PLAYERS):
            player = room.add_player(f"r{r}p{i}", b"")
            client = AckingClient(player, float(rng.uniform(0.0, period)))
            player.session = client
            clients.append(client)
        built.append((room, clients))
    blobs = [encode_input(float(np.cos(a)), float(np.sin(a))) for a in np.linspace(0, 6.28, 16)]
    tick_s: list[float] = []
    replication_s: list[float] = []
    first_s: list[float] = []
    mean_s: list[float] = []
    last_s: list[float] = []
    batch = ReplicationBatch(max_rooms=batch_rooms) if batch_rooms else None
    seq = 0
    encodes0 = sum(room.fanout.encodes for room, _ in built)
    for tick in range(1, ticks + 1):
        now = tick * period
        for _, clients in built:  # the inputs sent during the last period, with their acks
            for client in clients:
                client.ack_newest_before(now - period + client.phase_s)
                seq += 1
                client.player.inputs.push(seq, blobs[seq % len(blobs)])
        SENT.clear()
        replicating = 0.0
        started = time.process_time()
        wall = time.perf_counter()
        for room, _ in built:  # RoomHost.step_all's loop
            replicating += room.step(tick, batch).get("SnapshotReplicationSystem", 0.0)
            if batch is not None and batch.due():
                replicating += _flush(batch)
        if batch is not None:
            replicating += _flush(batch)
        tick_s.append(time.process_time() - started)
        replication_s.append(replicating / rooms)
        first_s.append(SENT[0] - wall)
        mean_s.append(statistics.fmean(SENT) - wall)
        last_s.append(SENT[-1] - wall)
        for _, clients in built:
            for client in clients:
                delay = float(rng.exponential(jitter_ms / 1000.0)) if jitter_ms > 0 else 0.0
                client.received(now + delay)
    encodes = sum(room.fanout.encodes for room, _ in built) - encodes0
    delivered = sum(c.snapshots for _, clients in built for c in clients)
    payload = sum(c.payload_bytes for _, clients in built for c in clients)
    for room, _ in built:
        room.close()
    tick_ms = statistics.median(tick_s) * 1000
    return TickResult(
        rooms=rooms,
        jitter_ms=jitter_ms,
        batch_rooms=batch_rooms,
        tick_ms=round(tick_ms, 3),
        room_step_us=round(tick_ms * 1000 / rooms, 1),
        replication_us=round(statistics.median(replication_s) * 1e6, 1),
        first_send_ms=round(statistics.median(first_s) * 1000, 3),
        mean_send_ms=round(statistics.median(mean_s) * 1000, 3),
        last_send_ms=round(statistics.median(last_s) * 1000, 3),
        encodes_per_room_tick=round(encodes / (rooms * ticks), 3),
        clients_per_encode=round(delivered / max(1, encodes), 2),
        payload_bytes_per_snapshot=round(payload / max(1, delivered), 1),
    )


def _flush(batch: ReplicationBatch) -> float:
    started = time.perf_counter()
    batch.flush()
    return time.perf_counter() - started


def _medians(runs: list[TickResult]) -> dict[str, float]:
    return {
        key: statistics.median(getattr(run, key) for run in runs)
        for key in asdict(runs[0])
        if key not in ("rooms", "jitter_ms", "batch_rooms")
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--ticks", type=int, default=90, help="ticks per repetition")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--jitter-ms", type=float, default=8.0, help="mean snapshot delivery delay (exponential)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--batch-rooms", type=int, default=BATCH_ROOMS, help="rooms per batch (0: room by room)"
    )
    parser.add_argument("--compare", action="store_true", help="room by room vs batched")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    modes = (0, args.batch_rooms) if args.compare else (args.batch_rooms,)
    runs: dict[int, list[TickResult]] = {mode: [] for mode in modes}
    for rep in range(args.reps):  # alternating, so both modes see the same machine
        for mode in modes:
            runs[mode].append(
                measure(args.rooms, args.ticks, args.jitter_ms, args.seed + rep, mode)
            )
    by_mode = {f"batch_{mode}": _medians(results) for mode, results in runs.items()}
    result: dict[str, object] = {
        "rooms": args.rooms,
        "jitter_ms": args.jitter_ms,
        "reps": args.reps,
    }
    if args.compare:
        plain, batched = by_mode["batch_0"], by_mode[f"batch_{args.batch_rooms}"]
        result.update(by_mode)
        result["ratios"] = {key: round(batched[key] / plain[key], 3) for key in plain if plain[key]}
    else:
        result.update({"batch_rooms": args.batch_rooms, **by_mode[f"batch_{args.batch_rooms}"]})
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{args.rooms} cubes rooms x {PLAYERS} clients, N=100, 10 % moving, "
        f"ack jitter {args.jitter_ms:g} ms (medians of {args.reps} reps)"
    )
    for mode, medians in by_mode.items():
        print(f"  {mode}")
        for key, value in medians.items():
            print(f"    {key:28s} {value:10.3f}")
    if args.compare:
        for key, ratio in result["ratios"].items():  # type: ignore[union-attr]
            print(f"  ratio {key:22s} {ratio:10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
