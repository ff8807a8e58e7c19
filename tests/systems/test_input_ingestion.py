"""InputQueue and InputIngestionSystem: bounds, credit, sanity strikes, undecodable blobs."""

from __future__ import annotations

import esper
import pytest

from astranet.ecs import ColumnStore
from astranet.examples.dots import Dots, encode_input
from astranet.game import SimContext
from astranet.systems.input_ingestion import (
    MAX_INPUT_CREDIT,
    MAX_QUEUED_INPUTS,
    MAX_VIOLATIONS,
    VIOLATION_WINDOW_TICKS,
    IngestionStats,
    InputIngestionSystem,
    InputQueue,
)

RIGHT = encode_input(1.0, 0.0)


def test_queue_keeps_the_newest_frames_within_its_bound() -> None:
    queue = InputQueue("p", 1)
    results = [queue.push(seq, RIGHT) for seq in range(1, MAX_QUEUED_INPUTS + 3)]
    assert results == [True] * MAX_QUEUED_INPUTS + [False, False]
    assert len(queue) == MAX_QUEUED_INPUTS
    queue.credit = float(MAX_QUEUED_INPUTS)  # take everything, to look at what is left
    assert [frame.seq for frame in queue.take()][:2] == [3, 4]


def test_credit_is_one_input_per_tick_banked_up_to_the_cap() -> None:
    queue = InputQueue("p", 1)
    for seq in range(1, 9):
        queue.push(seq, RIGHT)
    assert len(queue.take()) == 1  # starts with one tick's credit
    assert len(queue.take()) == 1
    idle = InputQueue("p", 1)
    for _ in range(10):  # ten idle ticks bank at most MAX_INPUT_CREDIT
        idle.take()
    for seq in range(1, 9):
        idle.push(seq, RIGHT)
    assert len(idle.take()) == MAX_INPUT_CREDIT


def test_violations_kick_only_when_dense() -> None:
    sparse = InputQueue("p", 1)
    for n in range(MAX_VIOLATIONS * 2):
        sparse.record_violation(n * VIOLATION_WINDOW_TICKS // (MAX_VIOLATIONS - 1), "fast")
    assert sparse.kick_reason is None
    dense = InputQueue("p", 1)
    for tick in range(MAX_VIOLATIONS - 1):
        dense.record_violation(tick, "fast")
    assert dense.kick_reason is None
    dense.record_violation(MAX_VIOLATIONS, "fast")
    assert dense.kick_reason == "movement sanity: fast"


@pytest.fixture
def world() -> SimContext:
    esper.switch_world("test-input-ingestion")
    game = Dots()
    sim = SimContext(ColumnStore(game.schema), tick=1, room_id="AAAAAAAA")
    yield sim
    esper.switch_world("default")
    esper.delete_world("test-input-ingestion")


def test_system_applies_refuses_and_counts(world: SimContext) -> None:
    game = Dots()
    net_id = game.spawn_player(world, "player-1")
    start = world.store["Body.pos"][world.store.rows([net_id])][0].copy()
    queue = InputQueue("player-1", net_id)
    stats = IngestionStats()
    system = InputIngestionSystem(game, lambda: [queue], stats)
    queue.credit = float(MAX_INPUT_CREDIT)
    queue.push(1, b"\xff")  # undecodable: empty input, seq still applied
    queue.push(2, bytes([127, 127]))  # impossible speed: refused, empty input
    queue.push(3, RIGHT)
    system.process(world)
    assert queue.last_input_seq == 3
    assert (stats.applied, stats.undecodable, stats.violations) == (3, 1, 1)
    moved = world.store["Body.pos"][world.store.rows([net_id])][0] - start
    assert moved[0] == pytest.approx(10.0 / 30, abs=1 / 512) and moved[1] == 0.0


def test_a_standing_queue_after_a_stall_drains_instead_of_adding_latency_forever() -> None:
    from astranet.systems.input_ingestion import MAX_INPUT_CREDIT, STANDING_QUEUE_TICKS

    queue = InputQueue("p", 1)
    seq = 0
    # A stall: 6 frames arrive at once, more than the credit cap can absorb.
    for _ in range(6):
        seq += 1
        queue.push(seq, b"")
    queue.take()
    backlog = 6 - 1  # the first tick earns one credit
    # Then the client sends one frame per tick, as a well-behaved client does.
    depths = []
    for _ in range(STANDING_QUEUE_TICKS * (backlog + 1)):
        seq += 1
        queue.push(seq, b"")
        queue.take()
        depths.append(len(queue))
    assert depths[0] == backlog  # credit is spent every tick, so the backlog stays...
    assert depths[-1] == 0  # ...until the standing-queue rule drains it
    assert backlog > MAX_INPUT_CREDIT


def test_the_standing_queue_rule_grants_at_most_one_extra_frame_per_window() -> None:
    from astranet.systems.input_ingestion import STANDING_QUEUE_TICKS

    queue = InputQueue("p", 1)
    applied = 0
    seq = 0
    ticks = STANDING_QUEUE_TICKS * 10
    for _ in range(ticks):
        for _ in range(2):  # a speed-hacker sending two frames per tick
            seq += 1
            queue.push(seq, b"")
        applied += len(queue.take())
    assert applied <= ticks + ticks // STANDING_QUEUE_TICKS + 2
