"""Reliable events: exactly once, in order, across loss of the connection and Resume, bounded."""

from __future__ import annotations

import struct
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.errors import LocalProtocolError
from astranet.replication.events import (
    MAX_OUTBOX_EVENTS,
    RESYNC_EVENT,
    EventInbox,
    EventOutbox,
    GameEvent,
)

# One tick of the scenario: (events emitted, link action).
TICK = st.tuples(
    st.integers(0, 4),
    st.sampled_from(["ok", "ok", "ok", "ok", "drop", "down", "up"]),
)


@settings(max_examples=200, deadline=None)
@given(
    ticks=st.lists(TICK, min_size=1, max_size=120),
    delay=st.integers(0, 3),
    ack_lag=st.integers(0, 4),
    burst=st.integers(0, 2 * MAX_OUTBOX_EVENTS),
)
def test_events_arrive_exactly_once_in_order_through_drops_and_resumes(
    ticks: list[tuple[int, str]], delay: int, ack_lag: int, burst: int
) -> None:
    outbox, inbox = EventOutbox(), EventInbox()
    emitted: list[str] = []
    surfaced: list[GameEvent] = []
    link: deque[tuple[int, int, list[GameEvent]]] = deque()  # (arrive tick, snapshot, events)
    acks: deque[tuple[int, int]] = deque()  # (due tick, snapshot id)
    connected = True
    snapshot_id = 0

    def emit(tick: int, n: int) -> None:
        for _ in range(n):
            name = f"e{len(emitted)}"
            emitted.append(name)
            outbox.emit("game", name.encode(), tick)

    plan = [*ticks, (burst, "ok")] + [(0, "up")] + [(0, "ok")] * 40  # then a quiet, healthy link
    for tick, (n_events, action) in enumerate(plan):
        emit(tick, n_events)
        assert len(outbox) <= MAX_OUTBOX_EVENTS + 1
        if action == "down" and connected:
            connected = False
            link.clear()  # the socket died with everything in flight
            acks.clear()
        elif action == "up" and not connected:
            connected = True
            outbox.new_session()  # Resume
        if connected:
            snapshot_id += 1
            link.append((tick + delay, snapshot_id, outbox.due(snapshot_id, tick)))
            if action == "drop":  # the session skipped this snapshot (writer behind)
                link[-1] = (tick + delay, -1, link[-1][2])
        while link and link[0][0] <= tick:
            _, sid, events = link.popleft()
            surfaced.extend(inbox.accept(events))
            if sid > 0:
                acks.append((tick + ack_lag, sid))
        while acks and acks[0][0] <= tick:
            outbox.ack(acks.popleft()[1])

    seqs = [e.seq for e in surfaced]
    assert seqs == sorted(set(seqs))  # never duplicated, never reordered
    names = [e.data.decode() for e in surfaced if e.type == "game"]
    assert names == sorted(names, key=lambda name: int(name[1:]))  # emission order
    dropped = sum(struct.unpack("<I", e.data)[0] for e in surfaced if e.type == RESYNC_EVENT)
    assert len(names) + dropped >= len(emitted)  # nothing vanished without a resync saying so
    assert len(set(names)) == len(names)
    assert len(outbox) == 0  # the quiet healthy tail delivered everything


def test_a_client_too_far_behind_is_resynchronised_not_queued() -> None:
    outbox, inbox = EventOutbox(), EventInbox()
    for k in range(3 * MAX_OUTBOX_EVENTS):  # disconnected all along: no acks
        outbox.emit("chat", str(k).encode(), k)
        assert len(outbox) <= MAX_OUTBOX_EVENTS
    assert outbox.resyncs >= 2
    outbox.new_session()
    got = inbox.accept(outbox.due(1, 999))
    assert got[0].type == RESYNC_EVENT
    assert [e.data for e in got[1:]] == [str(k).encode() for k in range(769 - len(got), 768)]


def test_bad_events_are_refused() -> None:
    outbox = EventOutbox()
    with pytest.raises(LocalProtocolError):
        outbox.emit("", b"", 0)
    with pytest.raises(LocalProtocolError):
        outbox.emit("x" * 65, b"", 0)
    with pytest.raises(LocalProtocolError):
        outbox.emit("big", bytes(4097), 0)
