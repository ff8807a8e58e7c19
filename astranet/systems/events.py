"""Game events from simulation code: ``sim.events.emit(type, data, to=...)``.

The router of a room turns one ``emit`` into one event in each addressed player's
:class:`~astranet.replication.events.EventOutbox` (numbered per player, stamped with the tick);
the server writes them to each client just before that tick's snapshot (see that module for
delivery, Resume and the bound). Addressing:

* ``to=None`` -- every player of the room (connected or holding a seat for Resume);
* ``to="player-id"`` or an iterable of ids -- those players of this room (unknown ids are
  ignored: the player may have left);
* ``to=EVERYONE`` -- every player of every room on this server node.

Commands (client -> server): a signed ``Command`` (docs/protocol.md, "Game events") lands in
the player's :class:`CommandQueue` (on the seat, so its replay guard survives Resume);
:class:`CommandSystem` (Stage.INPUT) hands each to ``Game.on_command`` in seq order, at most
``COMMAND_RATE_PER_S`` per second per player (burst ``COMMAND_BURST``). A refused command (the
hook's reason, a replayed seq, over the rate) earns the player one ``astranet.command_refused``
event (data: seq u32 LE, then the reason in UTF-8); rate refusals are coalesced to one event
per tick.

Limits: those of the outbox (per-player bound; a player too far behind is resynchronised);
MAX_QUEUED_COMMANDS per player.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final

import esper

from astranet.replication.events import check_event

if TYPE_CHECKING:
    from astranet.game import Game, SimContext

if TYPE_CHECKING:
    from astranet.replication.events import EventOutbox

__all__ = [
    "COMMAND_BURST",
    "COMMAND_RATE_PER_S",
    "COMMAND_REFUSED_EVENT",
    "EVERYONE",
    "MAX_QUEUED_COMMANDS",
    "CommandQueue",
    "CommandSystem",
    "EventRouter",
    "refused_event",
]

log = logging.getLogger(__name__)

# Chat and "use item" rates: 10 a second sustained, 20 at once, is far above a human's.
COMMAND_RATE_PER_S = 10.0
COMMAND_BURST = 20.0
MAX_QUEUED_COMMANDS = 32  # > the burst: a full queue means the client floods
COMMAND_REFUSED_EVENT = "astranet.command_refused"
_SEQ = struct.Struct("<I")


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

    def emit_library(self, event_type: str, data: bytes, to: str) -> int:
        """An ``astranet.*`` event from the library itself (games use :meth:`emit`)."""
        return self.deliver_local(event_type, data, to, library=True)

    def deliver_local(
        self,
        event_type: str,
        data: bytes,
        to: str | Iterable[str] | None = None,
        *,
        library: bool = False,
    ) -> int:
        outboxes = self._outboxes()
        if to is None:
            targets = list(outboxes.values())
        else:
            ids = [to] if isinstance(to, str) else list(to)
            targets = [outboxes[i] for i in ids if i in outboxes]
        for outbox in targets:
            outbox.emit(event_type, data, self.tick, library=library)
        self.emitted += len(targets)
        return len(targets)


class CommandQueue:
    """One player's verified commands waiting for the tick, with their replay guard."""

    __slots__ = ("_queue", "credit", "last_seq", "rate_refused")

    def __init__(self) -> None:
        self.last_seq = 0  # highest seq accepted (continues across Resume: lives on the seat)
        self.credit = COMMAND_BURST
        self.rate_refused: tuple[int, int] | None = None  # (count, last seq) since last tick
        self._queue: deque[tuple[int, str, bytes]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, seq: int, command_type: str, data: bytes) -> str | None:
        """Queue a signature-checked command; returns why it was refused, or None."""
        if seq <= self.last_seq:
            return "replay"
        self.last_seq = seq
        if len(self._queue) >= MAX_QUEUED_COMMANDS:
            count = 1 if self.rate_refused is None else self.rate_refused[0] + 1
            self.rate_refused = (count, seq)
            return "rate"
        self._queue.append((seq, command_type, data))
        return None

    def take(self, per_tick: float) -> list[tuple[int, str, bytes]]:
        """This tick's commands (one tick's credit earned first, capped at the burst)."""
        self.credit = min(self.credit + per_tick, COMMAND_BURST)
        if not self._queue:  # most ticks: no command waiting
            return []
        n = min(len(self._queue), int(self.credit))
        self.credit -= n
        return [self._queue.popleft() for _ in range(n)]


def refused_event(seq: int, reason: str) -> bytes:
    """Data of an ``astranet.command_refused`` event: seq u32 LE, then the reason (UTF-8)."""
    return _SEQ.pack(seq) + reason.encode()[:200]


class CommandSystem(esper.Processor):
    """Stage.INPUT: each player's due commands through ``Game.on_command``, in seq order."""

    def __init__(
        self,
        game: Game,
        queues: Callable[[], Iterable[tuple[str, int, CommandQueue]]],
        tick_hz: int,
    ) -> None:
        self.game = game
        self.queues = queues  # (player_id, avatar net id, queue) of every seated player
        self.per_tick = COMMAND_RATE_PER_S / tick_hz
        self.accepted = 0
        self.refused = 0

    def process(self, sim: SimContext) -> None:
        events = sim.events
        per_tick = self.per_tick
        for player_id, net_id, queue in self.queues():
            if not queue._queue and queue.rate_refused is None:
                # Most ticks: nothing waiting, nothing refused. Only the credit is earned
                # (what take() would do), without its call and its empty list.
                credit = queue.credit + per_tick
                queue.credit = credit if credit < COMMAND_BURST else COMMAND_BURST
                continue
            if queue.rate_refused is not None:
                count, seq = queue.rate_refused
                queue.rate_refused = None
                self.refused += count
                events.emit_library(
                    COMMAND_REFUSED_EVENT, refused_event(seq, f"rate: {count}"), player_id
                )
            for seq, command_type, data in queue.take(per_tick):
                reason = self.game.on_command(sim, player_id, net_id, command_type, data)
                if reason is None:
                    self.accepted += 1
                    continue
                self.refused += 1
                log.debug("player %s: command %d refused (%s)", player_id, seq, reason)
                events.emit_library(COMMAND_REFUSED_EVENT, refused_event(seq, reason), player_id)
