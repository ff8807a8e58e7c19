"""A lighter co-op bot for server capacity runs: the real GameClient, no ClientWorld.

Why it exists: a full :class:`~astranet.tools.bot.Bot` decodes every snapshot, predicts,
reconciles and interpolates -- about 1.7 ms of CPU per bot per 30 Hz frame on the reference
machine, so one core drives ~20 of them and a 2-core box cannot put 100+ players on a server
(docs/benchmarks.md, "Load test (co-op bots)"). A :class:`LiteBot` keeps everything the
*server* sees a real client do -- Hello/FindOrCreate/JoinRoom, 30 signed inputs a second timed
to the server tick (GameClient's pacer), an ack for every snapshot folded into the next input
(so the server sends deltas against acked bases exactly as for a real client), a Ping a second,
Leave -- but never decodes a payload. It steers
blind with its seeded :class:`~astranet.tools.brain.Personality`: a random walk around where
dead reckoning says it is, an aim that sweeps, and FIRE on a conservative schedule.

FIRE without seeing the weapon: the server's cooldown counts *applied* inputs, so the bot
fires only when the server has applied (``Snapshot.last_input_seq``) at least
``SAFE_FIRE_GAP`` inputs past its previous shot. An input the server dropped from a full queue
would make that count one short; the gap has slack for that, and ``/metrics`` counts any
refusal (``input_violations``).

What it does *not* exercise: client CPU figures, prediction statistics (always 0 compared)
and the input-to-snapshot latency (measured as for the full bot; it is server-side anyway).
Limits: as :class:`~astranet.tools.bot.Bot`. Benchmark: ``astranet-loadtest --lite``.
"""

from __future__ import annotations

import math
import random

from astranet.client import ClientOptions
from astranet.examples.coop import encode_input
from astranet.examples.coop.sim import FIRE_INTERVAL_INPUTS, PLAYER_SPEED
from astranet.game import Game
from astranet.systems.prediction import MAX_INPUT_STEPS_PER_FRAME
from astranet.tools.bot import Bot
from astranet.tools.brain import WANDER_RADIUS

__all__ = ["SAFE_FIRE_GAP", "LiteBot"]

# The weapon fires once every FIRE_INTERVAL_INPUTS applied inputs; 2 more of slack for a
# dropped input or two.
SAFE_FIRE_GAP = FIRE_INTERVAL_INPUTS + 2


class LiteBot(Bot):
    """GameClient + ack-everything + blind steering (see the module docstring)."""

    def __init__(
        self, index: int, room_index: int, options: ClientOptions, game: Game, seed: int
    ) -> None:
        super().__init__(index, room_index, options, game, seed)
        self.rng = random.Random(seed ^ 0x5EED)
        self.position = (0.0, 0.0)  # dead reckoning: players spawn within 6 units of (0, 0)
        self.heading = self.rng.uniform(-math.pi, math.pi)
        self.aim = self.rng.uniform(-math.pi, math.pi)
        self.applied_seq = 0  # the server's last_input_seq
        self.last_fire_seq: int | None = None
        self.ticks = 0
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
        p = self.personality
        if self.ticks % (p.reaction_ticks * 6) == 0:  # a new direction every 1-2.4 s
            self.heading = self.rng.uniform(-math.pi, math.pi)
        x, y = self.position
        if max(abs(x), abs(y)) > WANDER_RADIUS:  # turn back toward the middle
            self.heading = math.atan2(-y, -x)
        self.ticks += 1
        self.aim += p.aim_turn_rad * 0.2 * p.strafe_sign  # a slow sweep
        fire = self._fire_ready()
        seq = self.link.send_input(
            encode_input(
                p.speed * math.cos(self.heading), p.speed * math.sin(self.heading), self.aim, fire
            )
        )
        if seq is None:
            return
        step = PLAYER_SPEED * self.tick_s * p.speed
        self.position = (x + step * math.cos(self.heading), y + step * math.sin(self.heading))
        if fire:
            self.last_fire_seq = seq
            self.brain.shots += 1

    def _fire_ready(self) -> bool:
        if self.last_fire_seq is None:
            return self.applied_seq > 0  # the first snapshot: the weapon starts cooled
        return self.applied_seq >= self.last_fire_seq + SAFE_FIRE_GAP
