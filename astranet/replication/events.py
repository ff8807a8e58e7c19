"""Reliable game events beside the snapshots: a per-player outbox and the client's inbox.

Game code emits events ("hit", "wave started", chat...) for one player, a room, or every room
(``sim.events.emit``, astranet.systems.events); each player's :class:`EventOutbox` numbers them
(``seq``, u32, consecutive per player, continuing across Resume) and stamps them with the
server tick they were emitted at. The server writes an ``Events`` message (docs/protocol.md)
just before that tick's ``Snapshot`` on the same ordered stream, to clients that asked for
events in ``Hello``. Delivery rules:

* **Exactly once, in order.** The outbox keeps every event until the client acks a snapshot
  sent after it (an ack of snapshot ``S`` proves everything written before ``S`` arrived: one
  WebSocket is one ordered stream). Unacked events are sent again on a new session (Resume)
  and when no ack has covered them for ``RESEND_AFTER_TICKS``; the :class:`EventInbox` drops
  every ``seq`` it has already surfaced, so a repeat is never seen twice, and surfaces events
  in ``seq`` order.
* **Bounded.** At most ``MAX_OUTBOX_EVENTS`` events / ``MAX_OUTBOX_BYTES`` of data wait per
  player. A client that falls further behind (disconnected, or not acking) is
  *resynchronised*: the waiting events are dropped and replaced by one ``astranet.resync``
  event (its data: how many were dropped, u32 LE), so the game knows to rebuild its view from
  the (full) snapshot state. The queue never grows past the bound.

Relative to snapshots: an event stamped ``server_tick = T`` is written before the snapshot of
tick ``T``, so a client that surfaces events when it receives them sees them no later than
the state of that tick (the library's ClientWorld surfaces them per frame).
Limits: MAX_OUTBOX_EVENTS, MAX_OUTBOX_BYTES, MAX_EVENT_DATA_BYTES, MAX_EVENTS_PER_MESSAGE.
Benchmark: none (per-event Python; events are for rare things, not per-entity state).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from astranet.errors import LocalProtocolError

__all__ = [
    "MAX_EVENTS_PER_MESSAGE",
    "MAX_EVENT_DATA_BYTES",
    "MAX_EVENT_TYPE_CHARS",
    "MAX_OUTBOX_BYTES",
    "MAX_OUTBOX_EVENTS",
    "RESEND_AFTER_TICKS",
    "RESERVED_PREFIX",
    "RESYNC_EVENT",
    "EventInbox",
    "EventOutbox",
    "GameEvent",
]

# 256 events is seconds of a busy game's events (hits, chat) and ~8 s of one event per tick:
# a client further behind than that rebuilds from snapshot state instead of replaying.
MAX_OUTBOX_EVENTS = 256
# Keeps a resend (every waiting event) well inside one 64 KiB message.
MAX_OUTBOX_BYTES = 32 * 1024
MAX_EVENT_DATA_BYTES = 4096
MAX_EVENT_TYPE_CHARS = 64
MAX_EVENTS_PER_MESSAGE = MAX_OUTBOX_EVENTS
# One second at 30 Hz without an ack covering a sent event: send the waiting ones again (a
# lost write after a transport hiccup; on a healthy link acks come within an RTT).
RESEND_AFTER_TICKS = 30
RESERVED_PREFIX = "astranet."  # library events; games may not emit these types
RESYNC_EVENT = "astranet.resync"
_SENT_RECORDS = 64  # (snapshot id, seq) pairs remembered: the snapshot ring's length
_U32 = struct.Struct("<I")
_U32_MAX = (1 << 32) - 1


@dataclass(frozen=True, slots=True)
class GameEvent:
    """One event: its per-player ``seq``, the server tick it was emitted at, type and data."""

    seq: int
    server_tick: int
    type: str
    data: bytes = b""


def check_event(event_type: str, data: bytes) -> None:
    """Raise ``LocalProtocolError`` for an event the wire cannot carry."""
    if not isinstance(event_type, str) or not 1 <= len(event_type) <= MAX_EVENT_TYPE_CHARS:
        raise LocalProtocolError(f"event type must be 1-{MAX_EVENT_TYPE_CHARS} characters")
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_EVENT_DATA_BYTES:
        raise LocalProtocolError(f"event data must be bytes of at most {MAX_EVENT_DATA_BYTES}")


class EventOutbox:
    """One player's events not yet known to be delivered (server side, sans-I/O)."""

    __slots__ = (
        "_bytes",
        "_events",
        "_resend",
        "_restart_timer",
        "_sent",
        "_sent_tick",
        "acked_seq",
        "next_seq",
        "resyncs",
        "sent_seq",
    )

    def __init__(self, next_seq: int = 1) -> None:
        self.next_seq = next_seq  # seq of the next event emitted
        self.acked_seq = next_seq - 1  # every event up to here is delivered
        self.sent_seq = next_seq - 1  # every event up to here was written at least once
        self.resyncs = 0
        self._events: deque[GameEvent] = deque()  # seq > acked_seq, ascending
        self._bytes = 0
        self._sent: deque[tuple[int, int]] = deque(maxlen=_SENT_RECORDS)  # (snapshot id, seq)
        self._sent_tick: int | None = None  # tick of the oldest unacked send
        self._resend = False
        self._restart_timer = False

    def __len__(self) -> int:
        return len(self._events)

    def emit(self, event_type: str, data: bytes, tick: int, *, library: bool = False) -> GameEvent:
        """Queue one event; over the bound, everything waiting becomes one resync event.
        ``library``: an ``astranet.*`` event of the library's own (games may not send them)."""
        check_event(event_type, data)
        if event_type.startswith(RESERVED_PREFIX) and not library:
            raise LocalProtocolError(f"event types starting {RESERVED_PREFIX!r} are reserved")
        if self.next_seq > _U32_MAX:
            raise LocalProtocolError("event seq space (u32) exhausted")
        event = GameEvent(self.next_seq, tick, event_type, bytes(data))
        self.next_seq += 1
        self._events.append(event)
        self._bytes += len(event.data)
        if len(self._events) > MAX_OUTBOX_EVENTS or self._bytes > MAX_OUTBOX_BYTES:
            self._resync(tick)
        return event

    def _resync(self, tick: int) -> None:
        """Drop what waits; one resync event (seq continues) tells the client so."""
        # A marker still waiting folds into the new one: the client learns the whole count.
        dropped = sum(_U32.unpack(e.data)[0] if e.type == RESYNC_EVENT else 1 for e in self._events)
        self._events.clear()
        self.resyncs += 1
        marker = GameEvent(self.next_seq, tick, RESYNC_EVENT, _U32.pack(min(dropped, _U32_MAX)))
        self.next_seq += 1
        self._events.append(marker)
        self._bytes = len(marker.data)
        # Everything before the marker is given up: the client must not wait for it.
        self.acked_seq = marker.seq - 1
        self.sent_seq = min(self.sent_seq, self.acked_seq)

    def due(self, snapshot_id: int, tick: int) -> list[GameEvent]:
        """Events to write now, just before snapshot ``snapshot_id`` of ``tick``.

        New events, or every waiting one after a new session or a resend timeout. Records
        that an ack of ``snapshot_id`` (or later) proves them delivered.
        """
        if not self._events:
            self._sent_tick = None
            return []
        if self._restart_timer:
            self._sent_tick, self._restart_timer = tick, False
        if self._sent_tick is not None and tick - self._sent_tick >= RESEND_AFTER_TICKS:
            self._resend = True  # nothing acked for a while: write everything waiting again
        first = self.acked_seq + 1 if self._resend else self.sent_seq + 1
        self._resend = False
        out = [e for e in self._events if e.seq >= first][:MAX_EVENTS_PER_MESSAGE]
        if not out:
            return []
        self.sent_seq = max(self.sent_seq, out[-1].seq)
        self._sent.append((snapshot_id, out[-1].seq))
        if self._sent_tick is None or first == self.acked_seq + 1:
            self._sent_tick = tick  # the resend timer runs from the oldest unacked write
        return out

    def ack(self, snapshot_id: int) -> None:
        """The client acked ``snapshot_id``: events written before it are delivered."""
        if not self._sent:  # nothing written since the last ack (every ack of a client
            return  # without the event channel): what the loop below would conclude
        covered = self.acked_seq
        for sent_id, seq in self._sent:
            if sent_id <= snapshot_id:
                covered = max(covered, seq)
        if covered <= self.acked_seq:
            return
        self.acked_seq = covered
        while self._events and self._events[0].seq <= covered:
            self._bytes -= len(self._events.popleft().data)
        while self._sent and self._sent[0][1] <= covered:
            self._sent.popleft()
        # Acks are flowing: restart the resend timer at the next write (or stop it when all
        # that was written is delivered).
        self._sent_tick = None
        self._restart_timer = covered < self.sent_seq

    def new_session(self) -> None:
        """A new connection (Resume): send every waiting event again; forget old acks' ids."""
        self._sent.clear()
        self._resend = True
        self.sent_seq = self.acked_seq
        self._sent_tick = None


class EventInbox:
    """The client's side: surfaces each event exactly once, in ``seq`` order."""

    __slots__ = ("duplicates", "last_seq")

    def __init__(self) -> None:
        self.last_seq = 0  # highest seq surfaced (seqs start at 1)
        self.duplicates = 0  # repeats dropped (resends after a resume)

    def accept(self, events: list[GameEvent]) -> list[GameEvent]:
        """The events of one ``Events`` message that were not surfaced yet, in order."""
        fresh = []
        for event in sorted(events, key=lambda e: e.seq):
            if event.seq <= self.last_seq:
                self.duplicates += 1
                continue
            fresh.append(event)
            self.last_seq = event.seq
        return fresh
