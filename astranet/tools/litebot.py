"""A lighter co-op bot for server capacity runs: the real GameClient, no ClientWorld.

Why it exists: a full :class:`~astranet.tools.bot.Bot` decodes every snapshot, predicts,
reconciles and interpolates -- about 1.7 ms of CPU per bot per 30 Hz frame on the reference
machine, so one core drives ~20 of them and a 2-core box cannot put 100+ players on a server
(docs/benchmarks.md, "Load test (co-op bots)"). A :class:`LiteBot` keeps everything the
*server* sees a real client do -- Hello/FindOrCreate/JoinRoom, 30 signed inputs a second timed
to the server tick (GameClient's pacer), an ack for every snapshot folded into the next input
(so the server sends deltas against acked bases exactly as for a real client), a Ping a second,
Leave -- but never decodes a payload. It steers
blind with the game's blind pilot (``bot_kit.blind(seed)``; the co-op game's is
``astranet.examples.coop.brain.BlindPilot``: a random walk around where dead reckoning says it
is, an aim that sweeps, and FIRE on a schedule the server's cooldown allows), told only the
server's ``Snapshot.last_input_seq``.

What it does *not* exercise: client CPU figures, prediction statistics (always 0 compared)
and the input-to-snapshot latency (measured as for the full bot; it is server-side anyway).
Limits: as :class:`~astranet.tools.bot.Bot`. Benchmark: ``astranet-loadtest --lite``.
"""

from __future__ import annotations

from typing import Any

from astranet.systems.prediction import MAX_INPUT_STEPS_PER_FRAME
from astranet.tools.bot import Bot

__all__ = ["LiteBot"]


class LiteBot(Bot):
    """GameClient + ack-everything + blind steering (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As :class:`~astranet.tools.bot.Bot`; steers with ``kit.blind(seed)``."""
        super().__init__(*args, **kwargs)
        self.pilot = self.kit.blind(self.seed)
        self.applied_seq = 0  # the server's last_input_seq
        self.tick_s = 1.0 / 30.0  # one input per server tick; set from JoinAccepted.tick_hz
        self._accumulated_s = 0.0
        self._last_ms: float | None = None

    async def join(self) -> str:
        accepted = await self.client.connect()
        self.room_id = accepted.room_id
        self.party_token = self.client.conn.party_token
        self.tick_s = 1.0 / accepted.tick_hz
        self.joined = True
        return accepted.room_id

    def step(self) -> None:
        if not self.joined:
            return
        for received in self.link.drain_snapshots():
            self.link.ack(received.snapshot_id)
            if received.last_input_seq is not None:
                self.applied_seq = max(self.applied_seq, received.last_input_seq)
        now_ms = self.client.now_ms()
        steps = self.client.input_steps_due(now_ms)  # timed to the server tick
        if steps is None:  # pacing off: a fixed step on the bot's own clock
            if self._last_ms is not None:
                self._accumulated_s += (now_ms - self._last_ms) / 1000.0
            steps = min(int(self._accumulated_s / self.tick_s), MAX_INPUT_STEPS_PER_FRAME)
            self._accumulated_s = min(self._accumulated_s - steps * self.tick_s, self.tick_s)
        self._last_ms = now_ms
        for _ in range(steps):
            self._send_one()
        self._sample_rtt()

    def _send_one(self) -> None:
        blob, fire = self.pilot.next_input(self.applied_seq)
        seq = self.link.send_input(blob)
        if seq is None:
            return
        self.pilot.sent(seq, fire, self.tick_s)
        self.brain.shots += fire
