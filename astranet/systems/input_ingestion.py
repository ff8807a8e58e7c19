"""InputIngestionSystem: apply each player's queued inputs, in seq order, at the tick.

Connections only enqueue (``InputQueue.push``) verified frames; this system is the one place
inputs touch the world, synchronously inside the room's tick. One input is one fixed step of
the player's movement (``Game.apply_input``), exactly what the client predicted.

Why an input budget: a client may send inputs in bursts (network bunching) and the server
should catch up, but a client that sends faster than the tick rate must not move faster. Each
player earns one input per tick, banks at most ``MAX_INPUT_CREDIT`` (so a burst after a stall
is applied within a few ticks), and a queue longer than ``MAX_QUEUED_INPUTS`` drops its oldest
frames (counted in ``IngestionStats.dropped``, not a violation: network bunching is not
cheating, and the credit already stops a fast sender from moving faster).

Movement sanity: ``Game.check_input`` may refuse a command (impossible speed, fire rate). A
refused or undecodable command is replaced by ``Game.empty_input()`` and its seq still counts
as applied (WIRE rule 3). ``MAX_VIOLATIONS`` violations within ``VIOLATION_WINDOW_TICKS`` set
``InputQueue.kick_reason``; the server closes that connection after the tick.

Game-code failures: ``decode_input`` raising anything (not only :class:`InputError`) makes the
blob undecodable. ``check_input`` or ``apply_input`` raising on a player's command kicks that
player (``kick_reason`` ``game error: ...``) and drops the rest of its queue; the room and its
other players go on. Only a failure in the game's own systems closes the room.

Limits: MAX_QUEUED_INPUTS per player; per-player Python work only (players <= room capacity).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import esper

from astranet.game import Game, InputError, SimContext

__all__ = [
    "GAME_ERROR_REASON",
    "MAX_INPUT_CREDIT",
    "MAX_QUEUED_INPUTS",
    "MAX_VIOLATIONS",
    "STANDING_QUEUE_TICKS",
    "VIOLATION_WINDOW_TICKS",
    "IngestionStats",
    "InputIngestionSystem",
    "InputQueue",
    "QueuedInput",
]

log = logging.getLogger(__name__)

# 8 frames ~ 270 ms at 30 Hz: deeper queues only add latency to a player who is already late.
MAX_QUEUED_INPUTS = 8
# Inputs a player may have applied in one tick after a stall (3 ~ 100 ms of catch-up).
MAX_INPUT_CREDIT = 3
# Ticks a queue may stay non-empty before one extra frame is applied (1 s at 30 Hz).
STANDING_QUEUE_TICKS = 30
# Violations tolerated within the window before a kick: a glitchy client survives a few.
MAX_VIOLATIONS = 10
VIOLATION_WINDOW_TICKS = 300  # 10 s at 30 Hz
_CREDIT_CAP = float(MAX_INPUT_CREDIT)
#: Start of the kick reason when the game's own code raised on a player's command.
GAME_ERROR_REASON = "game error"


@dataclass(slots=True)
class IngestionStats:
    """Room-wide counters read by /metrics."""

    applied: int = 0
    undecodable: int = 0
    violations: int = 0
    dropped: int = 0  # inputs dropped because a player's queue overflowed
    game_errors: int = 0  # check_input/apply_input raised on a player's command (a kick)


class QueuedInput(NamedTuple):
    """One verified frame waiting for its tick."""

    seq: int
    blob: bytes
    view_tick: float | None  # the client's stated view (ticks), for sim.rewind


#: ``QueuedInput(seq, blob, view_tick)`` without the NamedTuple's Python ``__new__`` (the
#: same tuple, ~0.17 us less per input; push runs for every InputFrame).
_new_queued_input = tuple.__new__


class InputQueue:
    """One player's verified inputs waiting for the next tick."""

    __slots__ = (
        "_frames",
        "_standing_ticks",
        "_violation_ticks",
        "credit",
        "kick_reason",
        "last_input_seq",
        "net_id",
        "player_id",
    )

    def __init__(self, player_id: str, net_id: int, last_input_seq: int | None = None) -> None:
        self.player_id = player_id
        self.net_id = net_id
        #: Highest seq the simulation applied (goes out as Snapshot.last_input_seq).
        self.last_input_seq = last_input_seq
        self.credit = 0.0  # take() earns this tick's one input before spending
        self._standing_ticks = 0  # consecutive ticks that ended with frames still queued
        self.kick_reason: str | None = None
        self._frames: deque[QueuedInput] = deque()
        self._violation_ticks: deque[int] = deque(maxlen=MAX_VIOLATIONS)

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, seq: int, blob: bytes, view_tick: float | None = None) -> bool:
        """Queue a verified frame (seqs arrive increasing: the replay guard saw to that).

        ``view_tick`` is the frame's stated view (lag compensation), None when absent.
        Returns False when the queue was full and its oldest frame was dropped.
        """
        frames = self._frames
        frames.append(_new_queued_input(QueuedInput, (seq, blob, view_tick)))
        if len(frames) > MAX_QUEUED_INPUTS:
            frames.popleft()
            return False
        return True

    def clear(self) -> None:
        self._frames.clear()

    def record_violation(self, tick: int, reason: str) -> None:
        window = self._violation_ticks
        window.append(tick)
        if len(window) == MAX_VIOLATIONS and tick - window[0] < VIOLATION_WINDOW_TICKS:
            self.kick_reason = f"movement sanity: {reason}"

    def take(self) -> list[QueuedInput]:
        """Frames to apply this tick (spends credit; one credit is earned per tick).

        A stall longer than the credit cap leaves a *standing queue*: a client sending one
        frame per tick then stays k frames behind forever (k ticks of added latency). After
        STANDING_QUEUE_TICKS ticks that all ended with frames left over, one extra frame is
        applied, which drains the backlog at the cost of letting a cheater gain at most
        1/STANDING_QUEUE_TICKS (3 %) of extra speed.
        """
        frames = self._frames
        credit = min(self.credit + 1.0, _CREDIT_CAP)
        queued = len(frames)
        if queued <= 1:  # the usual tick (one frame, or none): no counting, no backlog
            self.credit = credit - queued
            self._standing_ticks = 0
            return [frames.popleft()] if queued else []
        n = min(queued, int(credit))
        self.credit = credit - n
        if queued > n:
            self._standing_ticks += 1
            if self._standing_ticks >= STANDING_QUEUE_TICKS:
                self._standing_ticks = 0
                n += 1
        else:
            self._standing_ticks = 0
        return [frames.popleft() for _ in range(n)]


class InputIngestionSystem(esper.Processor):
    """Stage.INPUT: decode, sanity-check and apply every player's due inputs."""

    def __init__(
        self,
        game: Game,
        queues: Callable[[], Iterable[InputQueue]],
        stats: IngestionStats | None = None,
    ) -> None:
        self.game = game
        self.queues = queues
        self.stats = stats if stats is not None else IngestionStats()
        self._warned_decoder = False

    def process(self, sim: SimContext) -> None:
        # One loop with the game's hooks bound once per tick: an input is a handful of
        # ~0.1 us Python steps, and a method call per input and per hook lookup were a third
        # of them. The unusual outcomes (undecodable, refused, a raising hook) are methods.
        game = self.game
        decode, check, apply = game.decode_input, game.check_input, game.apply_input
        applied = 0
        try:
            for queue in self.queues():
                for seq, blob, view_tick in queue.take():
                    queue.last_input_seq = seq  # applied, refused or failed: the seq counts
                    net_id = queue.net_id
                    try:
                        command = decode(blob)
                    except Exception as exc:
                        command = self._undecodable(exc)
                    try:
                        reason = check(sim, net_id, command)
                    except Exception as exc:
                        self._game_failed(queue, "check_input", exc)
                        queue.clear()  # the player is being kicked: drop the rest of its inputs
                        break
                    if reason is not None:
                        command = self._refused(sim, queue, reason)
                    sim.view_tick = view_tick  # what sim.rewind() should look at for this input
                    try:
                        apply(sim, net_id, command)
                    except Exception as exc:
                        self._game_failed(queue, "apply_input", exc)
                        queue.clear()
                        break
                    finally:
                        sim.view_tick = None
                    applied += 1
        finally:
            self.stats.applied += applied

    def _refused(self, sim: SimContext, queue: InputQueue, reason: str) -> object:
        """Count and log a command ``check_input`` refused; returns the empty input instead."""
        self.stats.violations += 1
        queue.record_violation(sim.tick, reason)
        log.info("player %s: input refused (%s)", queue.player_id, reason)
        return self.game.empty_input()

    def _game_failed(self, queue: InputQueue, hook: str, exc: Exception) -> None:
        # One player's command broke the game's code: kick that player, not the room.
        log.error(
            "player %s: the game's %s raised on their input; kicking them",
            queue.player_id,
            hook,
            exc_info=exc,
        )
        self.stats.game_errors += 1
        queue.kick_reason = f"{GAME_ERROR_REASON}: {hook} raised {type(exc).__name__}"

    def _undecodable(self, exc: Exception) -> object:
        """``decode_input`` raised on a blob: count it; returns the empty input instead."""
        if not isinstance(exc, InputError) and not self._warned_decoder:
            # A game decoder that trips over hostile bytes (struct.error, IndexError...) is
            # the same outcome as one that refuses them cleanly (WIRE rule 3: an empty input,
            # no error, no strike). Tell the game author once per room to raise InputError.
            self._warned_decoder = True
            log.warning(
                "the game's decode_input raised %r instead of InputError; treating such "
                "blobs as undecodable (logged once per room)",
                exc,
            )
        self.stats.undecodable += 1
        return self.game.empty_input()
