"""Lag compensation: the room's replicated state as one client saw it, from the snapshot ring.

A client renders remote entities a little in the past (interpolation delay) and its inputs
reach the server later still, so "is the target under my crosshair?" must be answered at the
client's *view time*, not at the server's present. The client states that time in each signed
``InputFrame`` (``view_tick`` + ``view_frac``, docs/protocol.md "Lag compensation"); the server
answers with :meth:`Rewinder.rewind`, reachable from game code as ``sim.rewind(sim.view_tick)``.

Operations: :func:`view_q_of` / :func:`view_time_ms` convert between a render time (ms of
server tick time, ``tick * 1000 / tick_hz``) and the wire's fixed-point view (1/65536 tick);
:func:`snap_render_time_ms` rounds a render time onto that grid, which the client's
interpolation does so that what it draws is exactly what the server can reproduce.
:meth:`Rewinder.rewind` finds the two captured snapshots around the view time, dequantizes them
into the client's flat float64 layout (:class:`~astranet.replication.prediction.StateLayout`)
and blends them with the client's own :class:`~astranet.replication.interpolation.SnapshotBuffer`
(same code, same arithmetic): while the client interpolates between consecutive snapshots --
the normal case -- the result is bit-identical to its ``RenderView`` for remote entities.

Goals: no state beyond the snapshot ring the server keeps anyway (DEFAULT_RING, ~2 s);
rewinding costs two dequantizes (cached per snapshot) and one blend, paid only by games that
call it. Limits: views older than ``max_rewind_ms`` (default MAX_REWIND_MS) behind the newest
snapshot are clamped to that bound, views in the future to the newest snapshot
(``RewoundView.clamped`` says so); a client that lost the snapshot the server interpolates from
drew a blend over a longer gap (identical for linear motion, close otherwise).
Benchmark: benchmarks/lag_compensation.py (``rewind_us``, hit rates at 150 ms RTT).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from astranet.ecs.schema import Schema
from astranet.errors import ConfigurationError
from astranet.replication.interpolation import SnapshotBuffer
from astranet.replication.prediction import StateLayout, row_of
from astranet.replication.snapshot import Snapshot, SnapshotHistory

__all__ = [
    "MAX_REWIND_MS",
    "VIEW_FRAC_ONE",
    "Rewinder",
    "RewoundView",
    "snap_render_time_ms",
    "view_q_of",
    "view_time_ms",
]

# Valve's default cap is 1 s, Overwatch's 250 ms. 500 ms covers a 300 ms RTT plus the default
# 67-100 ms interpolation delay, and keeps a lying client from shooting at where targets were
# half a second ago; a game can lower or raise it with ``Game.max_rewind_ms``.
MAX_REWIND_MS = 500.0
#: Fixed-point scale of the wire view: ``view_frac`` counts 1/65536 of a tick.
VIEW_FRAC_ONE = 1 << 16
# Dequantized snapshots kept for repeated rewinds (several shots per tick hit the same pair).
_CACHED_STATES = 8


def view_q_of(render_time_ms: float, tick_ms: float) -> int:
    """The fixed-point view (ticks x 65536) nearest to ``render_time_ms``; never negative."""
    return max(0, round(render_time_ms / tick_ms * VIEW_FRAC_ONE))


def view_time_ms(view_q: int, tick_ms: float) -> float:
    """Render time (ms of server tick time) of a fixed-point view; the inverse of view_q_of."""
    return view_q / VIEW_FRAC_ONE * tick_ms


def snap_render_time_ms(render_time_ms: float, tick_ms: float) -> float:
    """``render_time_ms`` on the view grid, so the server can reproduce it exactly."""
    return view_time_ms(view_q_of(render_time_ms, tick_ms), tick_ms)


def flat_rows(schema: Schema, snapshot: Snapshot) -> np.ndarray:
    """The snapshot's values in the client's flat float64 layout (as ``read_rows`` gives)."""
    columns = snapshot.dequantize(schema)
    n = len(snapshot)
    if not columns:
        return np.zeros((n, 0))
    return np.hstack(
        [
            np.asarray(column, dtype=np.float64).reshape(
                n, int(np.prod(column.shape[1:], dtype=np.int64))
            )
            for column in columns
        ]
    )


@dataclass(frozen=True, slots=True)
class RewoundView:
    """Remote entities at one past view time. ``values`` rows follow ``net_ids`` (ascending)."""

    net_ids: np.ndarray
    values: np.ndarray
    layout: StateLayout
    view_tick: float  # the (possibly clamped) view, in ticks
    clamped: bool  # True when the asked view was outside [newest - cap, newest]

    def field(self, name: str) -> np.ndarray:
        """The columns of field ``name`` for every entity (same as ``RenderView.field``)."""
        return self.values[:, self.layout.slices[name]]

    def row(self, net_id: int) -> np.ndarray | None:
        return row_of(self.net_ids, self.values, net_id)


class Rewinder:
    """Answers rewinds for one room from its snapshot ring."""

    def __init__(
        self,
        schema: Schema,
        history: SnapshotHistory,
        tick_hz: int,
        *,
        max_rewind_ms: float = MAX_REWIND_MS,
    ) -> None:
        if not max_rewind_ms >= 0:
            raise ConfigurationError(f"max_rewind_ms must be >= 0, got {max_rewind_ms!r}")
        self.schema = schema
        self.history = history
        self.layout = StateLayout.of(schema)
        self.tick_ms = 1000.0 / tick_hz
        self.max_rewind_ms = float(max_rewind_ms)
        self.rewinds = 0  # for tests and metrics
        self.clamped = 0
        self._states: OrderedDict[int, np.ndarray] = OrderedDict()  # snapshot id -> flat rows

    def rewind(self, view_tick: float | None) -> RewoundView:
        """The replicated state at ``view_tick`` (ticks; None: the newest snapshot)."""
        newest = self.history.latest
        if newest is None:
            empty = np.zeros((0, self.layout.width))
            return RewoundView(np.zeros(0, np.uint32), empty, self.layout, 0.0, False)
        self.rewinds += 1
        newest_tick = float(newest.tick)
        oldest_allowed = newest_tick - self.max_rewind_ms / self.tick_ms
        asked = newest_tick if view_tick is None else float(view_tick)
        view = min(max(asked, oldest_allowed), newest_tick)
        clamped = view != asked
        self.clamped += clamped
        older, newer = self._bracket(view)
        buffer = SnapshotBuffer(self.layout.width, capacity=2)
        for snapshot in (older, newer) if newer is not None else (older,):
            buffer.push(snapshot.tick * self.tick_ms, snapshot.net_ids, self._state(snapshot))
        sampled = buffer.sample(view * self.tick_ms)
        return RewoundView(sampled.net_ids, sampled.values, self.layout, view, clamped)

    def _bracket(self, view: float) -> tuple[Snapshot, Snapshot | None]:
        """The newest snapshot at or before ``view`` and the one after it (None: none newer)."""
        older: Snapshot | None = None
        newer: Snapshot | None = None
        for snapshot in reversed(list(self.history)):  # newest first; the ring is small
            if snapshot.tick <= view:
                older = snapshot
                break
            newer = snapshot
        if older is None:  # the view is before the ring: hold the oldest, as the client does
            assert newer is not None
            return newer, None
        return older, newer

    def _state(self, snapshot: Snapshot) -> np.ndarray:
        state = self._states.get(snapshot.id)
        if state is None:
            state = flat_rows(self.schema, snapshot)
            self._states[snapshot.id] = state
            while len(self._states) > _CACHED_STATES:
                self._states.popitem(last=False)
        return state
