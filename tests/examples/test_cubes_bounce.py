"""cubes' BounceSystem follows its cubes' rows after a structural change of the store."""

from __future__ import annotations

import numpy as np

from astranet.examples.cubes import BounceSystem, Cubes
from astranet.server.room import Room


def _bounce(room: Room) -> BounceSystem:
    return next(p for p, _ in room._timed_processors() if isinstance(p, BounceSystem))


def test_moving_cubes_are_found_again_after_rows_shift() -> None:
    room = Room("bounce-test", "test", "cubes", Cubes(20, 0.5))
    try:
        with room.activated():
            bounce = _bounce(room)
        store = room.store
        room.step(1)
        moving = bounce.net_ids.tolist()
        still = [int(i) for i in store.net_ids if int(i) not in moving]
        store.despawn([still[0]])  # rows after it shift down by one
        before = {int(i): p.copy() for i, p in zip(store.net_ids, store["Cube.pos"], strict=True)}
        room.step(2)
        after = dict(zip(store.net_ids.tolist(), store["Cube.pos"], strict=True))
        for net_id, pos in before.items():
            assert np.array_equal(after[net_id], pos) == (net_id not in moving)
    finally:
        room.close()
