"""ClientWorld: the client's esper world for one game, with the netcode systems in order.

Step by step (docs/client.md explains why this order)::

    Stage.RECEIVE     ClockSyncSystem        the frame's server clock estimate
                      SnapshotReceiveSystem  snapshots -> replica, ack, frame.applied
    Stage.RECONCILE   ReconciliationSystem   compare at last_input_seq; rewind + replay
    Stage.PREDICT     PredictionSystem       this frame's input(s): send, apply, record
    Stage.SIMULATE    (the game's client-only systems, if any)
    Stage.INTERPOLATE InterpolationSystem    remote entities at render time -> RenderView

``ClientWorld.step(now_ms, dt_s)`` switches to the world, runs ``esper.process(frame)`` once
and returns the :class:`~astranet.systems.interpolation.RenderView` to draw. It never awaits:
with :class:`~astranet.client.connection.GameClient` on the same asyncio loop, call it from a
frame task (:func:`run_frames`); with :class:`~astranet.client.threaded.ThreadedClient`, call
it from the game's own loop.

Limits: one local player per world; ``tick_hz`` must be the server's (JoinAccepted.tick_hz).
Benchmark: benchmarks/netcode_feel.py.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence

import esper

from astranet.ecs import ColumnStore, EntityMirror
from astranet.game import Game, SimContext
from astranet.replication import Replica
from astranet.replication.events import GameEvent
from astranet.replication.interpolation import (
    DEFAULT_MAX_EXTRAPOLATION_MS,
    InterpolationDelay,
    SnapshotBuffer,
)
from astranet.replication.prediction import (
    DEFAULT_SMOOTHING_MS,
    CorrectionSmoother,
    PredictionHistory,
    StateLayout,
)
from astranet.replication.rewind import VIEW_FRAC_ONE, view_q_of
from astranet.systems.clock_sync import ClockSyncSystem
from astranet.systems.contract import ClientFrame, ClientLink, LocalPlayer
from astranet.systems.interpolation import InterpolationSystem, RenderView
from astranet.systems.prediction import PredictionSystem
from astranet.systems.reconciliation import ReconciliationSystem, SnapshotReceiveSystem
from astranet.systems.stages import Stage, add_system

__all__ = ["ClientWorld", "FrameLink", "run_frames", "wire_view_of"]

_world_numbers = itertools.count(1)


class FrameLink(ClientLink):
    """A ClientLink that also tells the time (GameClient and ThreadedClient both do)."""

    def now_ms(self) -> float: ...

    # Optional (lag compensation): the view the next inputs state; see ClientWorld.step.
    # def set_view(self, view: tuple[int, int] | None) -> None: ...


def wire_view_of(view: RenderView, tick_ms: float) -> tuple[int, int] | None:
    """``(view_tick, view_frac)`` of a drawn frame for InputFrame (None: nothing drawn)."""
    if view.render_time_ms is None:
        return None
    view_q = view_q_of(view.render_time_ms, tick_ms)
    return view_q // VIEW_FRAC_ONE, view_q % VIEW_FRAC_ONE


class ClientWorld:
    """Replica + predicted store + the five client systems, in their own esper world."""

    def __init__(
        self,
        game: Game,
        link: FrameLink,
        input_source: Callable[[], bytes],
        *,
        tick_hz: int = 30,
        world: str | None = None,
        smoothing_ms: float = DEFAULT_SMOOTHING_MS,
        smoothed_fields: Sequence[str] | None = None,
        max_extrapolation_ms: float = DEFAULT_MAX_EXTRAPOLATION_MS,
        mirror: EntityMirror | None = None,
        tolerance: float = 0.0,
    ) -> None:
        self.game = game
        self.link = link
        self.world = world or f"astranet.client.{next(_world_numbers)}"
        self.layout = StateLayout.of(game.schema)
        self.replica = Replica(game.schema, mirror=mirror)
        predicted = SimContext(ColumnStore(game.schema), 0, 1.0 / tick_hz, authoritative=False)
        self.local = LocalPlayer(predicted, self.layout, PredictionHistory(self.layout.width))
        self.smoother = CorrectionSmoother(
            self.layout.width, smoothing_ms, self.layout.mask(smoothed_fields)
        )
        interval_ms = 1000.0 / tick_hz
        buffer = SnapshotBuffer(self.layout.width, max_extrapolation_ms=max_extrapolation_ms)
        previous = esper.current_world
        esper.switch_world(self.world)
        try:
            self.clock_sync = add_system(ClockSyncSystem(link), Stage.RECEIVE, 0)
            self.receive = add_system(
                SnapshotReceiveSystem(link, self.replica, self.local), Stage.RECEIVE, 1
            )
            self.reconciliation = add_system(
                ReconciliationSystem(
                    game, self.replica, self.local, self.smoother, tolerance=tolerance
                ),
                Stage.RECONCILE,
            )
            self.prediction = add_system(
                PredictionSystem(game, link, self.local, input_source), Stage.PREDICT
            )
            self.interpolation = add_system(
                InterpolationSystem(
                    self.layout, self.local, self.smoother, buffer, InterpolationDelay(interval_ms)
                ),
                Stage.INTERPOLATE,
            )
        finally:
            esper.switch_world(previous)
        self._last_ms: float | None = None
        #: Game events received since the previous frame (``GameEvent``: seq, server_tick,
        #: type, data), in order; filled by every ``step``.
        self.events: list[GameEvent] = []

    def step(self, now_ms: float | None = None, dt_s: float | None = None) -> RenderView:
        """Run one frame (synchronously) and return what to draw."""
        now_ms = self.link.now_ms() if now_ms is None else now_ms
        if dt_s is None:
            dt_s = 0.0 if self._last_ms is None else max(0.0, (now_ms - self._last_ms) / 1000)
        self._last_ms = now_ms
        frame = ClientFrame(now_ms, dt_s)
        previous = esper.current_world
        esper.switch_world(self.world)
        try:
            esper.process(frame)
        finally:
            esper.switch_world(previous)
        view = self.interpolation.view
        drain = getattr(self.link, "drain_game_events", None)
        # Reliable game events that arrived since the last frame, each once, in order.
        self.events = drain() if drain is not None else []
        set_view = getattr(self.link, "set_view", None)
        if set_view is not None and frame.tick_ms is not None:
            # The next inputs say what the player saw in this frame (lag compensation).
            set_view(wire_view_of(view, frame.tick_ms))
        return view

    @property
    def view(self) -> RenderView:
        return self.interpolation.view

    def close(self) -> None:
        """Delete this world from esper."""
        if esper.current_world == self.world:
            esper.switch_world("default")
        if self.world in esper.list_worlds():
            esper.delete_world(self.world)


async def run_frames(
    world: ClientWorld,
    *,
    duration_s: float,
    fps: float = 60.0,
    on_frame: Callable[[RenderView], None] | None = None,
) -> int:
    """Step ``world`` at ``fps`` for ``duration_s`` on the running loop; returns frames run.

    The sleep is frame pacing (what a renderer's vsync does), not synchronisation.
    """
    frames = 0
    started_ms = world.link.now_ms()
    while world.link.now_ms() - started_ms < duration_s * 1000.0:
        view = world.step()
        frames += 1
        if on_frame is not None:
            on_frame(view)
        await asyncio.sleep(1.0 / fps)
    return frames
