"""The order of a tick, in one place: stages mapped to esper processor priorities.

esper runs processors by descending ``priority``. Every astranet system and every game system
is added through :func:`add_system` with a :class:`Stage`, so the order is this enum's order
and nowhere else (bevy_replicon's ``ServerSet``, lightyear's ``PredictionSystems``).

Server tick:  INPUT -> SIMULATE -> REPLICATE
Client frame: RECEIVE -> RECONCILE -> PREDICT -> SIMULATE (client-only effects) -> INTERPOLATE
"""

from __future__ import annotations

import enum

import esper

from astranet.errors import ConfigurationError

__all__ = ["Stage", "add_system", "priority_of"]


class Stage(enum.IntEnum):
    """Stages in execution order (lower value runs first)."""

    RECEIVE = 0  # client: apply received snapshots to the replica
    INPUT = 1  # server: apply queued player inputs
    RECONCILE = 2  # client: compare prediction with the server, rewind and replay
    PREDICT = 3  # client: apply this frame's local input immediately
    SIMULATE = 4  # the game's own systems
    REPLICATE = 5  # server: capture and send snapshots
    INTERPOLATE = 6  # client: place remote entities at render time


# Room between stages so a game can order several systems inside one stage.
_STRIDE = 100


def priority_of(stage: Stage, order: int = 0) -> int:
    """esper priority for ``stage``; ``order`` (0..99) orders systems within a stage."""
    if not 0 <= order < _STRIDE:
        raise ConfigurationError(f"order must be in 0..{_STRIDE - 1}, got {order}")
    return (len(Stage) - int(stage)) * _STRIDE - order


def add_system(processor: esper.Processor, stage: Stage, order: int = 0) -> esper.Processor:
    """Add ``processor`` to esper's current world at ``stage``; returns it for chaining."""
    esper.add_processor(processor, priority=priority_of(stage, order))
    return processor
