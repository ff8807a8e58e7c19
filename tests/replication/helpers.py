"""Shared test world: a schema with every encoding and a vectorised random evolution."""

from __future__ import annotations

import numpy as np

from astranet.ecs.schema import Angle, Bool, Float, Quantized, Quaternion, Schema, replicated
from astranet.ecs.store import ColumnStore


@replicated
class Body:
    pos = Quantized(-100.0, 100.0, 1 / 64, size=3)
    rot = Quaternion(bits=9)
    vel = Float(size=2)
    yaw = Angle(bits=8)
    on = Bool()


SCHEMA = Schema(Body)


def randomize_rows(store: ColumnStore, rows: np.ndarray, rng: np.random.Generator) -> None:
    """Give ``rows`` fresh random values in every field."""
    n = len(rows)
    store["Body.pos"][rows] = rng.uniform(-120, 120, (n, 3))  # some clamp at the range ends
    store["Body.rot"][rows] = rng.normal(size=(n, 4))
    store["Body.vel"][rows] = rng.normal(size=(n, 2)).astype(np.float32)
    store["Body.yaw"][rows] = rng.uniform(-10, 10, n)
    store["Body.on"][rows] = rng.random(n) < 0.5


def evolve(
    store: ColumnStore,
    rng: np.random.Generator,
    *,
    change: float = 0.2,
    spawn: int = 3,
    despawn: float = 0.1,
) -> None:
    """One random tick: despawn a fraction, spawn some, nudge a fraction of one or more fields."""
    if len(store):
        gone = store.net_ids[rng.random(len(store)) < despawn]
        store.despawn(gone)
    new = store.spawn(int(rng.integers(0, spawn + 1)))
    randomize_rows(store, store.rows(new), rng)
    n = len(store)
    moved = np.flatnonzero(rng.random(n) < change)
    store["Body.pos"][moved] += rng.normal(0, 0.5, (len(moved), 3)).astype(np.float32)
    turned = moved[rng.random(len(moved)) < 0.5]
    store["Body.rot"][turned] = rng.normal(size=(len(turned), 4))
    flipped = moved[rng.random(len(moved)) < 0.2]
    store["Body.on"][flipped] = ~store["Body.on"][flipped]


def make_store(rng: np.random.Generator, n: int) -> ColumnStore:
    store = ColumnStore(SCHEMA)
    ids = store.spawn(n)
    randomize_rows(store, store.rows(ids), rng)
    return store
