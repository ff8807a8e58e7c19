"""Game events from simulation code: ``sim.events.emit(type, data, to=...)``.

The router of a room turns one ``emit`` into one event in each addressed player's
:class:`~astranet.replication.events.EventOutbox` (numbered per player, stamped with the tick);
the server writes them to each client just before that tick's snapshot (see that module for
delivery, Resume and the bound). Addressing:

* ``to=None`` -- every player of the room (connected or holding a seat for Resume);
* ``to="player-id"`` or an iterable of ids -- those players of this room (unknown ids are
  ignored: the player may have left);
* ``to=EVERYONE`` -- every player of every room on this server node.

Limits: those of the outbox (per-player bound; a player too far behind is resynchronised).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final

from astranet.replication.events import check_event

if TYPE_CHECKING:
    from astranet.replication.events import EventOutbox

__all__ = ["EVERYONE", "EventRouter"]


class _Everyone:
    __slots__ = ()

    def __repr__(self) -> str:
        return "EVERYONE"


#: ``emit(..., to=EVERYONE)``: every player of every room of this server.
EVERYONE: Final = _Everyone()


class EventRouter:
    """One room's ``sim.events``: addresses events to its players' outboxes."""

    __slots__ = ("_outboxes", "emitted", "everyone", "tick")

    def __init__(self, outboxes: Callable[[], Mapping[str, EventOutbox]]) -> None:
        self._outboxes = outboxes  # player_id -> outbox, read at each emit
        self.tick = 0  # the room sets it every step
        self.emitted = 0
        #: Set by the server: emits to every room (``to=EVERYONE``); None = this room only.
        self.everyone: Callable[[str, bytes], None] | None = None

    def emit(
        self,
        event_type: str,
        data: bytes = b"",
        to: str | Iterable[str] | _Everyone | None = None,
    ) -> int:
        """Queue one event for the addressed players; returns how many outboxes took it."""
        check_event(event_type, data)
        if isinstance(to, _Everyone):
            if self.everyone is not None:
                self.everyone(event_type, bytes(data))
                return len(self._outboxes())
            to = None
        return self.deliver_local(event_type, bytes(data), to)

    def deliver_local(
        self, event_type: str, data: bytes, to: str | Iterable[str] | None = None
    ) -> int:
        outboxes = self._outboxes()
        if to is None:
            targets = list(outboxes.values())
        else:
            ids = [to] if isinstance(to, str) else list(to)
            targets = [outboxes[i] for i in ids if i in outboxes]
        for outbox in targets:
            outbox.emit(event_type, data, self.tick)
        self.emitted += len(targets)
        return len(targets)
