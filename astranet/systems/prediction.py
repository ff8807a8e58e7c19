"""PredictionSystem (Stage.PREDICT): apply the local player's input now, remember it, send it.

Each server tick consumes one input per player, so the client produces inputs at the server's
tick rate, not its frame rate: a fixed-step accumulator turns frame time into input steps (at
most ``MAX_INPUT_STEPS_PER_FRAME``, matching the server's input credit, so a long frame does not
send a burst the server would queue). For each step it:

1. asks the game's input source for the blob (``Callable[[], bytes]``, e.g. keyboard state);
2. sends it through the link (signed, numbered; ``None`` while reconnecting: nothing is
   predicted that the server will never apply);
3. decodes it with the game's ``decode_input`` and checks it with ``check_input`` exactly as
   the server will (an undecodable or refused blob becomes ``empty_input()``);
4. applies the game's own ``apply_input`` to the predicted store and records
   ``(seq, command, state)`` in the :class:`~astranet.replication.prediction.PredictionHistory`.

Timed to the tick: a link that offers ``input_steps_due(now_ms)`` (GameClient, with input
pacing on) decides the number of steps instead of the accumulator, so each input is produced
just before the server tick that applies it (astranet.client.pacing); ``None`` from it means
"no pacing", and the accumulator is used.

Held inputs: the server queues at most ``MAX_QUEUED_INPUTS`` per player and drops the oldest
beyond that, which the client cannot predict. When more than one RTT's worth of inputs plus
``INPUT_PIPELINE_SLACK + MAX_INPUT_LEAD`` are still unapplied (a loaded server skipping ticks),
a step is *held*: neither sent nor predicted, so the prediction stays exact (the server would
have had no input for that tick anyway). The browser client does the same (js/src/world.js).

Limits: prediction starts once the first snapshot containing the avatar was reconciled
(``LocalPlayer.ready``); the client's step clock is its own monotonic frame time, so over hours
a drift between client and server clocks shows up as the server's input queue filling
(it drops the oldest, reconciliation then corrects).
Benchmark: benchmarks/netcode_feel.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import esper

from astranet.game import Game, InputError, SimContext
from astranet.systems.contract import LocalPlayer
from astranet.systems.input_ingestion import MAX_INPUT_CREDIT, MAX_QUEUED_INPUTS

if TYPE_CHECKING:
    from astranet.systems.contract import ClientFrame, ClientLink

__all__ = [
    "INPUT_PIPELINE_SLACK",
    "MAX_INPUT_LEAD",
    "MAX_INPUT_STEPS_PER_FRAME",
    "LocalPlayer",
    "PredictionSystem",
    "decode_command",
]

# The server banks at most 3 inputs of credit per player (systems.input_ingestion); sending more
# in one frame would only queue them there. A longer stall drops the missed steps instead.
MAX_INPUT_STEPS_PER_FRAME = MAX_INPUT_CREDIT
# Inputs unapplied beyond one RTT even when the server keeps up: the tick an input waits for
# and the frame that reads its snapshot (one each).
INPUT_PIPELINE_SLACK = 2
# At most this many more may be unapplied before a step is held; with the slack it stays
# below the server's queue bound, so the server never drops an input the client predicted.
MAX_INPUT_LEAD = 4
assert INPUT_PIPELINE_SLACK + MAX_INPUT_LEAD <= MAX_QUEUED_INPUTS
# Until the first Pong: assume a quarter second of RTT (8 ticks at 30 Hz).
_UNKNOWN_RTT_STEPS = 8


def decode_command(game: Game, sim: SimContext, net_id: int, blob: bytes) -> Any:
    """The command the server will apply for ``blob`` (same decode and sanity rules)."""
    try:
        command = game.decode_input(blob)
    except InputError:
        return game.empty_input()
    if game.check_input(sim, net_id, command) is not None:
        return game.empty_input()
    return command


class PredictionSystem(esper.Processor):
    """Stage.PREDICT: one input per server tick, applied immediately and sent."""

    def __init__(
        self, game: Game, link: ClientLink, local: LocalPlayer, input_source: Callable[[], bytes]
    ) -> None:
        self.game = game
        self.link = link
        self.local = local
        self.input_source = input_source
        self.accumulated_s = 0.0
        self.inputs_sent = 0
        self.steps_dropped = 0  # steps not taken because a frame was too long
        self.inputs_held = 0  # steps not taken because the server was too far behind
        self.last_applied_seq = 0  # newest input seq a snapshot said the server applied
        # The link's own RTT (the lowest smoothed RTT seen): a server that falls behind also
        # answers Pings late, and its inflated RTT must not buy it a longer queue.
        self.base_rtt_ms = float("inf")
        self._steps_due: Callable[[float], int | None] | None = getattr(
            link, "input_steps_due", None
        )

    def process(self, frame: ClientFrame) -> None:
        # Seqs continue across a Resume, so last_applied_seq stays valid in the new session.
        for applied in frame.applied:
            if applied.last_input_seq is not None:
                self.last_applied_seq = max(self.last_applied_seq, applied.last_input_seq)
        if frame.rtt_ms is not None:
            self.base_rtt_ms = min(self.base_rtt_ms, frame.rtt_ms)
        local = self.local
        if not local.ready or local.net_id is None:
            self.accumulated_s = 0.0
            return
        paced = self._steps_due(frame.now_ms) if self._steps_due is not None else None
        steps = self._fixed_steps(frame, local.sim.dt_s) if paced is None else paced
        limit = self._unapplied_limit(local.sim.dt_s)
        for _ in range(steps):
            newest = local.history.newest
            sent = newest.seq if newest is not None else self.last_applied_seq
            if sent - self.last_applied_seq >= limit:
                self.inputs_held += 1  # the server is behind: its queue would drop this input
                continue
            blob = self.input_source()
            seq = self.link.send_input(blob)
            if seq is None:
                return  # reconnecting: the server would never apply it
            command = decode_command(self.game, local.sim, local.net_id, blob)
            self.game.apply_input(local.sim, local.net_id, command)
            local.history.record(seq, command, local.state())
            self.inputs_sent += 1

    def _unapplied_limit(self, step_s: float) -> int:
        """How many sent inputs may be unapplied before the next step is held."""
        if self.base_rtt_ms == float("inf"):
            rtt_steps = _UNKNOWN_RTT_STEPS
        else:
            rtt_steps = math.ceil(self.base_rtt_ms / (step_s * 1000.0))
        return rtt_steps + INPUT_PIPELINE_SLACK + MAX_INPUT_LEAD

    def _fixed_steps(self, frame: ClientFrame, step_s: float) -> int:
        """Steps of the frame-time accumulator (no pacing link)."""
        self.accumulated_s += frame.dt_s
        steps = int(self.accumulated_s / step_s)
        if steps > MAX_INPUT_STEPS_PER_FRAME:
            self.steps_dropped += steps - MAX_INPUT_STEPS_PER_FRAME
            self.accumulated_s -= (steps - MAX_INPUT_STEPS_PER_FRAME) * step_s
            steps = MAX_INPUT_STEPS_PER_FRAME
        self.accumulated_s -= steps * step_s
        return steps
