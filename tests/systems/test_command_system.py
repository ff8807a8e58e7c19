"""CommandSystem's idle fast path earns credit exactly as CommandQueue.take would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from astranet.systems.events import COMMAND_BURST, CommandQueue, CommandSystem


class _Game:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str]] = []

    def on_command(self, sim, player_id, net_id, command_type, data):  # type: ignore[no-untyped-def]
        self.seen.append((player_id, net_id, command_type))
        return None


class _Events:
    def emit_library(self, event_type: str, data: bytes, to: str) -> int:
        return 1


class _Sim:
    events = _Events()


@given(
    tick_hz=st.sampled_from([1, 7, 20, 30, 60]),
    start_credit=st.floats(0.0, COMMAND_BURST),
    pushes=st.lists(st.integers(0, 3), min_size=1, max_size=60),
)
def test_process_earns_and_spends_credit_as_take(
    tick_hz: int, start_credit: float, pushes: list[int]
) -> None:
    game = _Game()
    queue, reference = CommandQueue(), CommandQueue()
    queue.credit = reference.credit = start_credit
    system = CommandSystem(game, lambda: [("p", 7, queue)], tick_hz)  # type: ignore[arg-type]
    seq = 0
    expected: list[tuple[str, int, str]] = []
    for count in pushes:  # commands arriving before each tick
        for _ in range(count):
            seq += 1
            queue.push(seq, "use", b"")
            reference.push(seq, "use", b"")
        system.process(_Sim())  # type: ignore[arg-type]
        expected += [("p", 7, kind) for _, kind, _ in reference.take(system.per_tick)]
        assert queue.credit == reference.credit
        assert len(queue) == len(reference)
    assert game.seen == expected
