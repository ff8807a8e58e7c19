"""The client contract: the per-frame types every client system shares, and nothing else.

One leaf module (it imports no other client system and no wire message), so the systems that
fill these types and the systems that read them depend on this module, not on each other:

* :class:`ClientLink` — what the systems need from the network shell (clock estimate, drained
  snapshots, ack, send input); :class:`astranet.client.GameClient`,
  :class:`astranet.client.ThreadedClient` and the bots implement it.
* :class:`ClockEstimate` — the shell's view of the server clock at one client instant.
* :class:`ReceivedSnapshot` — one snapshot as the shell received it: the fields of the wire
  ``Snapshot`` copied out (the shell converts; this module does not know the message class),
  when it arrived and which session it belongs to.
* :class:`AppliedSnapshot` — a snapshot that became the replica's current state this frame.
* :class:`ClientFrame` — the one argument of ``esper.process(frame)`` on the client.
* :class:`LocalPlayer` — the predicted world and what the client remembers about its avatar.

The browser client mirrors this module one to one in ``js/src/contract.js`` (same names, same
fields in camelCase); docs/browser.md lists the correspondence. Change both together.
Benchmark: none (plain data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from astranet.game import SimContext
from astranet.replication.prediction import PredictionHistory, StateLayout, read_rows

__all__ = [
    "AppliedSnapshot",
    "ClientFrame",
    "ClientLink",
    "ClockEstimate",
    "LocalPlayer",
    "ReceivedSnapshot",
]


@dataclass(frozen=True, slots=True)
class ClockEstimate:
    """The network shell's view of the server clock at one client instant."""

    server_tick: float | None  # estimated current server tick (float), None before a Pong
    rtt_ms: float | None  # RFC 6298 smoothed RTT
    rttvar_ms: float | None  # RFC 6298 RTT variation (the jitter estimate)
    tick_hz: int | None  # from JoinAccepted


@dataclass(frozen=True, slots=True)
class ReceivedSnapshot:
    """A snapshot as the network shell hands it over (the wire message's fields, copied)."""

    snapshot_id: int
    server_tick: int
    base_id: int | None
    compressed: bool
    payload: bytes
    last_input_seq: int | None
    arrival_ms: float  # client monotonic ms when it was read off the socket
    epoch: int  # session number: increases on every (re)join
    entity: int | None  # the local avatar's net id in that session


@dataclass(frozen=True, slots=True)
class AppliedSnapshot:
    """A snapshot that became the replica's current state this frame."""

    snapshot_id: int
    server_tick: int
    last_input_seq: int | None
    arrival_ms: float
    net_ids: np.ndarray  # ascending
    rows: np.ndarray  # float64 (n, layout.width), read_rows of the replica store


class ClientLink(Protocol):
    """What the client systems need from the network shell (thread-safe in both shells:
    :class:`astranet.client.GameClient` and :class:`astranet.client.ThreadedClient`)."""

    def clock_estimate(self, now_ms: float) -> ClockEstimate: ...

    def drain_snapshots(self) -> list[ReceivedSnapshot]: ...

    def ack(self, snapshot_id: int) -> None: ...

    def send_input(self, blob: bytes) -> int | None: ...


@dataclass(slots=True)
class ClientFrame:
    """The one argument every client processor receives (``esper.process(frame)``)."""

    now_ms: float  # client monotonic clock, milliseconds
    dt_s: float  # time since the previous frame
    server_tick: float | None = None
    rtt_ms: float | None = None
    rttvar_ms: float | None = None
    tick_ms: float | None = None
    arrival_time_ms: float | None = None  # tick time of a snapshot arriving now
    #: Snapshots applied to the replica this frame, oldest first (SnapshotReceiveSystem).
    applied: list[AppliedSnapshot] = field(default_factory=list)
    #: True on the first frame that sees a new session (after a reconnect).
    reconnected: bool = False


@dataclass(slots=True)
class LocalPlayer:
    """The client's predicted world and what it remembers about its own avatar."""

    sim: SimContext  # sim.store is the predicted store; authoritative=False
    layout: StateLayout
    history: PredictionHistory
    net_id: int | None = None  # the avatar (JoinAccepted.entity)
    ready: bool = False  # the predicted store holds the avatar

    def state(self) -> np.ndarray:
        """The avatar's current predicted flat state."""
        assert self.net_id is not None
        rows = self.sim.store.rows([self.net_id])
        return read_rows(self.sim.store, rows)[0]
