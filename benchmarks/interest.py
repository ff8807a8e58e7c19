"""Interest management under a byte budget: 10,000 moving entities, 100 clients, 32 kB/s each.

The server side of a room, in process (the decisions are the server's; sockets would only add
noise): ``--entities`` entities wander a ``--world``-unit square world (every one moves every
tick); ``--clients`` clients are avatars among them. Each tick: move, capture the snapshot,
build one :class:`~astranet.replication.interest.SpatialGrid`, compute every client's relevance
in one pass (within ``--radius``, priority 1 within ``--near`` and falling with the square of
the distance) and every client's budgeted payload in one
:meth:`~astranet.replication.interest.BudgetedEncoder.encode_many` call, under ``--budget``
bytes per second for the whole Snapshot message. Clients ack each snapshot
``--ack-lag`` ticks later (100 ms RTT at the default 3). Four clients decode every payload
with the real Replica and must hold exactly what the server recorded.

Measured (ticks run back to back; ``tick_ms`` is one tick's CPU time, move + capture + grid +
every client's relevance and encode; the period at ``--tick-hz`` is the bound it must stay in):
``bytes_per_client_per_s_max`` (Snapshot messages as encoded on the wire, the busiest client),
``near_update_hz`` / ``far_update_hz`` (ticks per second at which the snapshot a client gets
holds an entity within ``--near`` / beyond ``2 * --near`` of it at its current value, mean
over client-entity pairs; every entity moves every tick), ``tick_ms_p99``.

    .venv/bin/python benchmarks/interest.py [--entities 10000] [--clients 100]
        [--budget 32000] [--seconds 10] [--system-malloc] [--json]

Like astranet-server, the process keeps the heap a tick frees (astranet.server.heap);
``--system-malloc`` measures with the C library's defaults instead.

Goals (issue 15): every client within budget, near entities >= 29 Hz, tick p99 < period.
Results: docs/benchmarks.md, section "Interest management".
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from astranet.ecs import Angle, Quantized, Schema, replicated
from astranet.ecs.store import ColumnStore
from astranet.net.messages import Snapshot as SnapshotMessage
from astranet.net.messages import encode
from astranet.replication import Replica, Snapshot, SnapshotHistory
from astranet.replication.interest import (
    ENVELOPE_BYTES,
    BudgetedEncoder,
    InterestBaseline,
    SpatialGrid,
)
from astranet.server.heap import retain_freed_memory


@replicated
class Body:
    pos = Quantized(-512.0, 512.0, 1 / 16, size=2)
    heading = Angle(bits=8)
    hp = Quantized(0.0, 127.0, 1.0)


SCHEMA = Schema(Body)
SPEED = 4.0  # units/s: a walking pace at 1/16-unit resolution


def holds_current(composite: Snapshot, snap: Snapshot, rows: np.ndarray) -> np.ndarray:
    """Per relevant row: the client's new state has this entity at its current value."""
    ids = snap.net_ids[rows]
    at = np.minimum(np.searchsorted(composite.net_ids, ids), max(len(composite) - 1, 0))
    held = composite.net_ids[at] == ids if len(composite) else np.zeros(len(ids), bool)
    for mine, now in zip(composite.codes, snap.codes, strict=True):
        held &= (mine[at] == now[rows]).all(axis=1) if len(composite) else held
    return held


def run(args: argparse.Namespace) -> dict[str, float]:
    rng = np.random.default_rng(args.seed)
    store = ColumnStore(SCHEMA)
    half = args.world / 2
    store.spawn(
        args.entities,
        Body__pos=rng.uniform(-half, half, (args.entities, 2)),
        Body__hp=100,
    )
    heading = rng.uniform(-np.pi, np.pi, args.entities)
    history = SnapshotHistory(store)
    encoder = BudgetedEncoder(SCHEMA)
    viewers = rng.choice(store.net_ids, args.clients, replace=False)
    baselines = [InterestBaseline() for _ in viewers]
    checked = {k: Replica(SCHEMA) for k in range(min(4, args.clients))}
    budget = args.budget // args.tick_hz - ENVELOPE_BYTES
    dt_s = 1.0 / args.tick_hz
    ticks = int(args.seconds * args.tick_hz)
    pending: list[tuple[int, int, int]] = []  # (due tick, client, snapshot id)
    message_bytes = np.zeros(args.clients)
    tick_ms: list[float] = []
    tick_cpu_ms: list[float] = []  # CPU time of this thread: less hostage to a busy machine
    near_sent = near_total = far_sent = far_total = 0
    for tick in range(ticks):
        started = time.perf_counter()
        started_cpu = time.thread_time()
        heading += rng.normal(0.0, 0.3, len(heading))
        step = np.stack([np.cos(heading), np.sin(heading)], axis=1) * SPEED * dt_s
        pos = store["Body.pos"]
        pos += step
        np.clip(pos, -half, half, out=pos)
        store["Body.heading"][:] = heading
        snap = history.capture(tick)
        grid = SpatialGrid(store["Body.pos"], cell_size=args.radius / 2)
        viewer_rows = store.rows(viewers)
        relevances = grid.relevance_many(
            grid.positions[viewer_rows], args.radius, near_radius=args.near
        )
        outs = encoder.encode_many(baselines, snap, relevances, budget)
        stats = relevances
        tick_ms.append((time.perf_counter() - started) * 1000.0)
        tick_cpu_ms.append((time.thread_time() - started_cpu) * 1000.0)

        # Outside the timed tick: wire sizes, update rates, decoding, acks.
        for k, (out, relevance) in enumerate(zip(outs, stats, strict=True)):
            message = SnapshotMessage(
                out.id, out.server_tick, out.base_id, out.compressed, out.payload, 12345
            )
            message_bytes[k] += len(encode(message))
            center = grid.positions[viewer_rows[k]]
            dist = np.hypot(*(grid.positions[relevance.rows] - center).T)
            sent = holds_current(baselines[k].latest, snap, relevance.rows)
            near, far = dist <= args.near, dist > 2 * args.near
            if tick >= args.tick_hz:  # after the first second (initial spawns)
                near_sent += int(sent[near].sum())
                near_total += int(near.sum())
                far_sent += int(sent[far].sum())
                far_total += int(far.sum())
            if k in checked:
                replica = checked[k]
                replica.apply(out.id, out.base_id, out.payload, out.compressed, out.server_tick)
                recorded = baselines[k].sent(out.id)
                assert recorded is not None and replica.latest is not None
                assert replica.latest.same_state(recorded), "client state != server's record"
            pending.append((tick + args.ack_lag, k, out.id))
        due = [p for p in pending if p[0] <= tick]
        pending = [p for p in pending if p[0] > tick]
        for _, k, snapshot_id in due:
            baselines[k].ack(snapshot_id)
    seconds = ticks / args.tick_hz
    ordered = sorted(tick_ms)
    return {
        "entities": args.entities,
        "clients": args.clients,
        "budget_bytes_per_s": args.budget,
        "bytes_per_client_per_s_max": float(message_bytes.max() / seconds),
        "bytes_per_client_per_s_mean": float(message_bytes.mean() / seconds),
        "near_update_hz": args.tick_hz * near_sent / max(near_total, 1),
        "far_update_hz": args.tick_hz * far_sent / max(far_total, 1),
        "near_per_client": near_total / max(1, (ticks - args.tick_hz) * args.clients),
        "relevant_per_client": float(statistics.fmean(len(s.rows) for s in stats) if stats else 0),
        "tick_hz": args.tick_hz,
        "tick_ms_p50": statistics.median(tick_ms),
        "tick_ms_p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "tick_cpu_ms_p50": statistics.median(tick_cpu_ms),
        "tick_cpu_ms_p99": sorted(tick_cpu_ms)[min(len(tick_cpu_ms) - 1, int(0.99 * ticks))],
        "period_ms": 1000.0 / args.tick_hz,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--budget", type=int, default=32_000, help="bytes/s per client")
    parser.add_argument("--world", type=float, default=1000.0, help="side of the square")
    parser.add_argument("--radius", type=float, default=150.0)
    parser.add_argument("--near", type=float, default=25.0)
    parser.add_argument("--tick-hz", type=int, default=30)
    parser.add_argument("--ack-lag", type=int, default=3, help="ticks until a snapshot is acked")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave the C heap's defaults (the server retains freed memory: astranet.server.heap)",
    )
    args = parser.parse_args()
    if not args.system_malloc:
        retain_freed_memory()  # as astranet-server does at start
    result = run(args)
    for key, value in result.items():
        print(f"{key:28} {value:.2f}" if isinstance(value, float) else f"{key:28} {value}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
