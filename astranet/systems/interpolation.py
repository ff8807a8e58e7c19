"""InterpolationSystem (Stage.INTERPOLATE): what to draw this frame, as one ``RenderView``.

Remote entities are drawn a delay behind the server, blended between the two snapshots around
the render time (:class:`~astranet.replication.interpolation.SnapshotBuffer`); the delay is
:class:`~astranet.replication.interpolation.InterpolationDelay`: two snapshot intervals by
default, growing with measured arrival jitter. When the buffer starves (the next snapshot is
late) it extrapolates for at most ``max_extrapolation_ms`` and counts one starvation.
The local avatar is not interpolated: it is drawn at its predicted state plus the decaying
correction offset (:class:`~astranet.replication.prediction.CorrectionSmoother`).

Render time: ``frame.arrival_time_ms`` (the server tick time of a snapshot arriving now, from
ClockSyncSystem) minus the delay. Before the first Pong it falls back to the newest snapshot's
stamp plus the client time since it arrived.

Output: ``system.view`` — net ids (ascending), flat float64 values in the
:class:`~astranet.replication.prediction.StateLayout` of the schema (``view.field("Body.pos")``
gives an (n, 2) array), the sampling status and the render time. A renderer reads it after
``esper.process``. Limits: those of SnapshotBuffer (32 snapshots).
Benchmark: benchmarks/netcode_feel.py (starvations, display delay); the sampling itself is
timed in astranet.replication.interpolation's docstring (~40-75 us for 1000 entities).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import esper
import numpy as np

from astranet.replication.interpolation import (
    InterpolationDelay,
    InterpolationStatus,
    SnapshotBuffer,
)
from astranet.replication.prediction import CorrectionSmoother, StateLayout, row_of
from astranet.replication.rewind import snap_render_time_ms

if TYPE_CHECKING:
    from astranet.systems.contract import ClientFrame, LocalPlayer

__all__ = ["InterpolationStats", "InterpolationSystem", "RenderView"]


@dataclass(frozen=True, slots=True)
class RenderView:
    """Everything to draw this frame. ``values`` rows follow ``net_ids``."""

    net_ids: np.ndarray
    values: np.ndarray
    layout: StateLayout
    status: InterpolationStatus
    render_time_ms: float | None
    local_net_id: int | None

    def field(self, name: str) -> np.ndarray:
        """The columns of field ``name`` for every drawn entity."""
        return self.values[:, self.layout.slices[name]]

    def row(self, net_id: int) -> np.ndarray | None:
        return row_of(self.net_ids, self.values, net_id)


@dataclass(slots=True)
class InterpolationStats:
    frames: int = 0
    sampled: int = 0  # frames with something buffered
    extrapolated: int = 0  # frames past the newest snapshot (starving)


class InterpolationSystem(esper.Processor):
    """Stage.INTERPOLATE: sample remote entities at render time, overlay the local avatar."""

    def __init__(
        self,
        layout: StateLayout,
        local: LocalPlayer,
        smoother: CorrectionSmoother,
        buffer: SnapshotBuffer,
        delay: InterpolationDelay,
    ) -> None:
        self.layout = layout
        self.local = local
        self.smoother = smoother
        self.buffer = buffer
        self.delay = delay
        self.stats = InterpolationStats()
        self.view = RenderView(
            np.zeros(0, np.uint32),
            np.zeros((0, layout.width)),
            layout,
            InterpolationStatus.EMPTY,
            None,
            None,
        )
        self._anchor: tuple[float, float] | None = None  # (tick time, client arrival ms)

    @property
    def starvations(self) -> int:
        return self.buffer.starvations

    def process(self, frame: ClientFrame) -> None:
        self.stats.frames += 1
        if frame.reconnected:
            self.buffer.clear()  # the new session starts from a full snapshot
        tick_ms = frame.tick_ms if frame.tick_ms is not None else self.delay.nominal_interval_ms
        for applied in frame.applied:
            stamp_ms = applied.server_tick * tick_ms
            self.delay.on_snapshot_arrival(applied.arrival_ms, stamp_ms)
            if self.buffer.push(
                stamp_ms, applied.net_ids.astype(np.uint32, copy=False), applied.rows
            ):
                self._anchor = (stamp_ms, applied.arrival_ms)
        if frame.arrival_time_ms is not None:
            arriving_ms = frame.arrival_time_ms
        elif self._anchor is not None:
            arriving_ms = self._anchor[0] + (frame.now_ms - self._anchor[1])
        else:
            return
        # On the 1/65536-tick grid InputFrame.view_tick carries, so the server's rewind of this
        # view (lag compensation) reproduces exactly what is drawn.
        render_ms = snap_render_time_ms(self.delay.render_time_ms(arriving_ms), tick_ms)
        sampled = self.buffer.sample(render_ms)
        net_ids, values = sampled.net_ids, np.array(sampled.values, dtype=np.float64)
        if sampled.status is not InterpolationStatus.EMPTY:
            self.stats.sampled += 1
        if sampled.status in (
            InterpolationStatus.EXTRAPOLATING,
            InterpolationStatus.HOLDING_NEWEST,
        ):
            self.stats.extrapolated += 1
        net_ids, values = self._overlay_local(frame.now_ms, net_ids, values)
        self.view = RenderView(
            net_ids, values, self.layout, sampled.status, render_ms, self.local.net_id
        )

    def _overlay_local(
        self, now_ms: float, net_ids: np.ndarray, values: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw the local avatar at prediction + smoothing offset, not interpolated."""
        local = self.local
        if not local.ready or local.net_id is None:
            return net_ids, values
        shown = local.state() + self.smoother.offset(now_ms)
        index = int(np.searchsorted(net_ids, local.net_id))
        if index < net_ids.shape[0] and int(net_ids[index]) == local.net_id:
            values[index] = shown
            return net_ids, values
        # Not (yet) in the interpolated window, e.g. just spawned: insert it in id order.
        return (
            np.insert(net_ids, index, np.uint32(local.net_id)),
            np.insert(values, index, shown, axis=0),
        )
