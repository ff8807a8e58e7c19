"""Room.step's processor loop: per-system timings, and systems added or removed between ticks."""

from __future__ import annotations

import esper

from astranet.examples.cubes import Cubes, encode_input
from astranet.server.room import Room
from astranet.systems import Stage, add_system


class _Counting(esper.Processor):
    def __init__(self) -> None:
        self.calls = 0

    def process(self, sim: object) -> None:
        self.calls += 1


def _room() -> Room:
    room = Room("step-test", "test", "cubes", Cubes(20, 0.5))
    room.add_player("p0", b"").inputs.push(1, encode_input(1.0, 0.0))
    return room


def test_step_times_every_system_and_adds_to_given_timings() -> None:
    room = _room()
    try:
        own = room.step(1)
        assert set(own) == {
            "InputIngestionSystem",
            "CommandSystem",
            "BounceSystem",
            "SnapshotReplicationSystem",
        }
        total = {"BounceSystem": 1.0, "Other": 2.0}
        returned = room.step(2, None, total)
        assert returned is total
        assert total["Other"] == 2.0
        assert total["BounceSystem"] > 1.0
        assert set(total) == set(own) | {"Other"}
    finally:
        room.close()


def test_a_system_added_or_removed_between_ticks_is_seen_next_tick() -> None:
    room = _room()
    try:
        room.step(1)
        first, second = _Counting(), _Counting()
        with room.activated():
            add_system(first, Stage.SIMULATE)
        room.step(2)
        assert first.calls == 1
        with room.activated():
            esper.remove_processor(_Counting)
            add_system(second, Stage.SIMULATE)  # same count of systems, a new one
        timings = room.step(3)
        assert (first.calls, second.calls) == (1, 1)
        assert "_Counting" in timings
    finally:
        room.close()
