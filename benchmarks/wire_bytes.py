"""Snapshot bytes per client and encode time, in process, for the cubes server-load game.

One cubes room (``astranet.examples.cubes``: N scenery cubes, a fraction moving at constant
velocity and bouncing off the walls, plus ``--players`` avatars walking the load clients' input
circle) is stepped at 30 Hz. Each tick the room's snapshot is captured and encoded through the
room's real :class:`~astranet.replication.SnapshotFanout` for one client that acks every
snapshot ``--ack-lag`` ticks later (1 = loopback: the ack is in before the next tick), once
with plain deltas and once with deltas against a prediction from the two newest acked
snapshots (``SnapshotFanout(predict=True)``, ``ASTRANET_PREDICTED_DELTAS=1``); a
:class:`~astranet.replication.Replica` decodes every payload and is checked against the server.

Per scenario we report the median payload bytes, the median whole message on the wire
(compact envelope, WIRE A1, with ``last_input_seq``), the projected bytes per client per second
at 30 snapshots/s and its ratio to Colyseus's 3,643 B/s (docs/benchmarks.md, the 200-client
side-by-side), and the median time of one ``encode_payload`` call for that client (timed
separately, ``--repeat`` times per tick, so the fan-out's per-tick cache does not hide it).

Usage: ``python benchmarks/wire_bytes.py [--ticks 300] [--json]``.
Results: docs/benchmarks.md, section "Snapshot bytes (payload v2)".
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import deque

import esper

from astranet.ecs import ColumnStore
from astranet.examples.cubes import BounceSystem, Cubes, move_avatar
from astranet.game import SimContext
from astranet.net.envelope import SnapshotEnvelope
from astranet.replication import (
    ClientBaseline,
    Replica,
    SnapshotFanout,
    SnapshotHistory,
    encode_payload,
)

HZ = 30
COLYSEUS_BYTES_PER_S = 3643.0  # docs/benchmarks.md: cubes N=100/10 %, 200 clients
SCENARIOS = ((100, 0.1), (1000, 0.1))


def _circle(steps: int = HZ) -> list[tuple[int, int]]:
    """The load clients' inputs (benchmarks/_loadclients.py): a full circle each second."""
    return [
        (
            round(0.95 * 127 * math.cos(2 * math.pi * i / steps)),
            round(0.95 * 127 * math.sin(2 * math.pi * i / steps)),
        )
        for i in range(steps)
    ]


def run(
    entities: int,
    fraction: float,
    ticks: int,
    players: int,
    ack_lag: int,
    repeat: int,
    predict: bool,
):
    esper.switch_world(f"wire_bytes_{entities}")
    esper.clear_database()
    game = Cubes(entities, fraction)
    store = ColumnStore(game.schema)
    sim = SimContext(store, 0, 1 / HZ, room_id="AbCd1234")
    game.setup(sim)
    bounce = esper.get_processor(BounceSystem)
    assert bounce is not None
    avatars = [game.spawn_player(sim, f"player-{i}") for i in range(players)]
    history = SnapshotHistory(store)
    fanout = SnapshotFanout(game.schema, history, predict=predict)
    client = ClientBaseline()
    replica = Replica(game.schema)
    acks: deque[tuple[int, int]] = deque()
    circle = _circle()
    payload_bytes, wire_bytes, encode_us = [], [], []
    for tick in range(1, ticks + 1):
        sim.tick = tick
        bounce.process(sim)
        for i, net_id in enumerate(avatars):
            move_avatar(store, net_id, circle[(tick + 7 * i) % len(circle)], sim.dt_s)
        while acks and acks[0][0] <= tick:
            client.ack(acks.popleft()[1])
        snapshot = history.capture(tick)
        fanout.begin_tick(snapshot)
        base = history.get(client.acked_id)
        prev = fanout.prediction_source(client, base, snapshot)
        out = fanout.encode_for(client)
        update = replica.apply(out.id, out.base_id, out.payload, out.compressed, out.server_tick)
        assert update.snapshot.same_state(snapshot), "replica diverged"
        acks.append((tick + ack_lag, out.id))
        if base is None:
            continue  # the join's full snapshot is not the steady state
        payload_bytes.append(len(out.payload))
        envelope = SnapshotEnvelope(
            out.id, out.server_tick, out.base_id, out.compressed, out.payload
        )
        wire_bytes.append(len(envelope.encode(tick, compact=True)))
        start = time.perf_counter()
        for _ in range(repeat):
            encode_payload(game.schema, snapshot, base, prev=prev)
        encode_us.append((time.perf_counter() - start) / repeat * 1e6)
    wire = statistics.median(wire_bytes)
    return {
        "entities": entities,
        "moving_fraction": fraction,
        "players": players,
        "predicted_deltas": predict,
        "rows": len(store),
        "payload_bytes_median": statistics.median(payload_bytes),
        "payload_bytes_mean": round(statistics.fmean(payload_bytes), 1),
        "wire_bytes_median": wire,
        "bytes_per_client_per_s": round(statistics.fmean(wire_bytes) * HZ, 1),
        "ratio_to_colyseus": round(statistics.fmean(wire_bytes) * HZ / COLYSEUS_BYTES_PER_S, 3),
        "encode_us_median": round(statistics.median(encode_us), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=300)
    parser.add_argument("--players", type=int, default=4)
    parser.add_argument("--ack-lag", type=int, default=1, help="ticks until an ack arrives")
    parser.add_argument("--repeat", type=int, default=20, help="timed encodes per tick")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = [
        run(n, f, args.ticks, args.players, args.ack_lag, args.repeat, predict)
        for n, f in SCENARIOS
        for predict in (False, True)
    ]
    for r in results:
        mode = "on " if r["predicted_deltas"] else "off"
        print(
            f"cubes N={r['entities']} {r['moving_fraction']:.0%} moving, {r['players']} players "
            f"({r['rows']} rows), predicted {mode}: payload "
            f"{r['payload_bytes_median']} B, wire "
            f"{r['wire_bytes_median']} B -> {r['bytes_per_client_per_s']:,.0f} B/s per client "
            f"({r['ratio_to_colyseus']:.2f}x Colyseus), encode {r['encode_us_median']:.1f} us"
        )
    if args.json:
        print(json.dumps({"scenarios": results, "ack_lag": args.ack_lag, "ticks": args.ticks}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
