"""pytest-benchmark cases for the replication hot paths (1,000 entities, as bevy_replicon does).

Run: ``.venv/bin/python -m pytest benchmarks/test_bench_replication.py --benchmark-only``.
Cases: capture (quantize every column), delta encode against a base 3 ticks old with 10 % of
entities moving, the same with LZ4, decode of that payload, a full encode, and one 30 Hz room
tick with 4 clients on distinct bases (capture + 4 encodes). The whole 10,000-entity tick and
its naive comparison live in benchmarks/tick.py; bandwidth lives in benchmarks/cubes.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from astranet.ecs import Angle, Bool, ColumnStore, Quantized, Quaternion, Schema, replicated
from astranet.replication import (
    ClientBaseline,
    SnapshotFanout,
    SnapshotHistory,
    decode_payload,
    encode_delta,
    encode_payload,
)

ENTITIES = 1000


@replicated
class Drone:
    pos = Quantized(-1024.0, 1024.0, 1 / 256, size=3)
    rot = Quaternion(bits=9)
    vel = Quantized(-64.0, 64.0, 1 / 256, size=3)
    heading = Angle(bits=10)
    alive = Bool()


SCHEMA = Schema(Drone)


@pytest.fixture
def room():
    rng = np.random.default_rng(0)
    store = ColumnStore(SCHEMA)
    store.spawn(
        ENTITIES,
        Drone__pos=rng.uniform(-500, 500, (ENTITIES, 3)),
        Drone__rot=rng.normal(size=(ENTITIES, 4)),
        Drone__alive=True,
    )
    moving = rng.random(ENTITIES) < 0.1
    store["Drone.vel"][moving] = rng.uniform(-10, 10, (int(moving.sum()), 3))
    history = SnapshotHistory(store)

    def step() -> None:
        store["Drone.pos"][moving] += store["Drone.vel"][moving] / 30

    for _ in range(4):
        step()
        history.capture(0)
    return store, history, step


def test_capture_1000(benchmark, room) -> None:
    _, history, _ = room
    benchmark(history.capture, 0)


def test_delta_encode_1000(benchmark, room) -> None:
    _, history, _ = room
    cur, base = history.latest, history.get(history.latest.id - 3)
    benchmark(encode_delta, SCHEMA, cur, base)


def test_delta_encode_lz4_1000(benchmark, room) -> None:
    _, history, _ = room
    cur, base = history.latest, history.get(history.latest.id - 3)
    benchmark(encode_payload, SCHEMA, cur, base)


def test_full_encode_1000(benchmark, room) -> None:
    _, history, _ = room
    benchmark(encode_delta, SCHEMA, history.latest)


def test_delta_decode_1000(benchmark, room) -> None:
    _, history, _ = room
    cur, base = history.latest, history.get(history.latest.id - 3)
    payload, compressed = encode_payload(SCHEMA, cur, base)
    result = benchmark(decode_payload, SCHEMA, payload, compressed, base)
    assert result.same_state(cur)


def test_room_tick_1000_entities_4_clients(benchmark, room) -> None:
    _, history, step = room
    fanout = SnapshotFanout(SCHEMA, history)
    clients = [ClientBaseline() for _ in range(4)]

    def tick() -> None:
        latest = history.latest
        for k, client in enumerate(clients):
            client.record_sent(latest.id - k, None)
            client.ack(latest.id - k)
        step()
        fanout.begin_tick(history.capture(0))
        for client in clients:
            fanout.encode_for(client)

    benchmark(tick)
