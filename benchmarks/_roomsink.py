"""A connected client as a room sees it, for the in-process room benchmarks
(benchmarks/coop_tick.py, benchmarks/cubes_room.py): no socket, no envelope.

:class:`AckingSink` keeps the id and payload size of the snapshot it was offered; the benchmark
calls :meth:`AckingSink.ack` before the next tick, so a room's clients share one delta base, as
on a quiet network.
"""

from __future__ import annotations

from astranet.server.room import Player

__all__ = ["AckingSink"]


class AckingSink:
    """A connected client as the room sees it: keeps the snapshot, acks it before next tick."""

    def __init__(self, player: Player) -> None:
        self.player = player
        self.last_payload = 0
        self.pending: int | None = None

    def offer_snapshot(self, snapshot: object, last_input_seq: int | None) -> None:
        self.pending = snapshot.id  # type: ignore[attr-defined]
        self.last_payload = len(snapshot.payload)  # type: ignore[attr-defined]

    def ack(self) -> None:
        if self.pending is not None:
            self.player.baseline.ack(self.pending)
            self.pending = None
