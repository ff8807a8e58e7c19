"""Stage order: esper runs processors in Stage order, and order within a stage."""

from __future__ import annotations

import esper
import pytest

from astranet.systems import Stage, add_system, priority_of


def test_priorities_follow_stage_then_order() -> None:
    ordered = [priority_of(stage, order) for stage in Stage for order in (0, 1, 99)]
    assert ordered == sorted(ordered, reverse=True)  # esper runs high priority first


def test_order_outside_the_stride_is_refused() -> None:
    with pytest.raises(ValueError):
        priority_of(Stage.SIMULATE, 100)


def test_esper_runs_added_systems_in_stage_order() -> None:
    ran: list[str] = []

    class Record(esper.Processor):
        def __init__(self, name: str) -> None:
            self.name = name

        def process(self) -> None:
            ran.append(self.name)

    esper.switch_world("test-stages")
    try:
        add_system(Record("replicate"), Stage.REPLICATE)
        add_system(Record("simulate-2"), Stage.SIMULATE, order=2)
        add_system(Record("input"), Stage.INPUT)
        add_system(Record("simulate-1"), Stage.SIMULATE, order=1)
        esper.process()
    finally:
        esper.switch_world("default")
        esper.delete_world("test-stages")
    assert ran == ["input", "simulate-1", "simulate-2", "replicate"]
