"""One headless co-op bot through the real client library, and what it measured.

A :class:`Bot` is a :class:`~astranet.client.GameClient` (join, signed inputs, acks, pings,
reconnection) plus a :class:`~astranet.client.ClientWorld` (prediction, reconciliation,
interpolation: the same systems a player's game runs) whose input source is the game's bot
brain. The tools know no game: the brain comes from the :class:`BotKit` the game's package
exports as ``bot_kit`` (:func:`bot_kit_of`; the co-op game's is in
``astranet.examples.coop.brain``), so ``--game`` picks the game *and* how its bots play.
Why the full ClientWorld and not a lighter loop: the
load test must cost the server what real players cost (acks drive delta baselines, inputs arrive
paced by the client's own clock), and the bot's prediction statistics (corrections, max error)
are only meaningful if the real reconciliation produced them. The price is client CPU: see
docs/benchmarks.md for how many bots one core drives.

Between the world and the client sits a :class:`MeasuredLink` that stamps every input it sends
and, when a snapshot acknowledges that seq (``last_input_seq``), records the *input-to-snapshot*
latency: send -> the server's next tick applies it -> the snapshot carrying the result arrives.
On a loopback link it is about one tick plus queueing; it grows with server overload.

The bot never awaits inside :meth:`Bot.step`; a worker steps all its bots from one frame task.
Limits: ``MAX_PENDING_INPUTS`` stamped inputs (older ones are forgotten: no sample),
``MAX_LATENCY_SAMPLES`` and ``MAX_RTT_SAMPLES`` kept per bot (the most recent).
Benchmark: ``astranet-loadtest`` (docs/loadtest.md).
"""

from __future__ import annotations

import importlib
import sys
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from astranet.client import ClientOptions, ClientWorld, GameClient
from astranet.client.events import ClientEvent, EventKind
from astranet.client.link import ForwardingLink
from astranet.ecs import ColumnStore
from astranet.errors import ConfigurationError, ConnectionClosed
from astranet.game import Game
from astranet.systems.contract import ReceivedSnapshot

__all__ = [
    "KICK_CLOSE_CODE",
    "MAX_LATENCY_SAMPLES",
    "MAX_PENDING_INPUTS",
    "MAX_RTT_SAMPLES",
    "BlindPilotLike",
    "Bot",
    "BotBrainLike",
    "BotKit",
    "BotReport",
    "MeasuredLink",
    "bot_kit_of",
]

MAX_PENDING_INPUTS = 256  # the client's own prediction history bound: 8.5 s of inputs
MAX_LATENCY_SAMPLES = 1024  # ~34 s of 30 Hz samples: plenty for a p99 per bot
MAX_RTT_SAMPLES = 600  # one per second: a 10-minute run
RTT_SAMPLE_INTERVAL_MS = 1000.0  # the client pings once a second; sampling faster repeats
KICK_CLOSE_CODE = 1008  # WIRE rules 3 and 5: policy violation


class MeasuredLink(ForwardingLink):
    """A ClientLink around a GameClient that measures input-to-snapshot latency."""

    def __init__(self, client: GameClient) -> None:
        super().__init__(client)
        self.client: GameClient = client
        self._pending: deque[tuple[int, float]] = deque(maxlen=MAX_PENDING_INPUTS)
        self.latency_ms: deque[float] = deque(maxlen=MAX_LATENCY_SAMPLES)
        self._epoch: int | None = None

    def input_steps_due(self, now_ms: float) -> int | None:
        return self.client.input_steps_due(now_ms)

    def send_input(self, blob: bytes) -> int | None:
        seq = self.client.send_input(blob)
        if seq is not None:
            self._pending.append((seq, self.client.now_ms()))
        return seq

    def drain_snapshots(self) -> list[ReceivedSnapshot]:
        received = self.client.drain_snapshots()
        for item in received:
            if item.epoch != self._epoch:
                if self._epoch is not None:  # a new session: old seqs will never be applied
                    self._pending.clear()  # (costs the samples of its first few inputs)
                self._epoch = item.epoch
            applied = item.last_input_seq
            if applied is None:
                continue
            # pending is in seq order; every input up to `applied` is in this snapshot.
            while self._pending and self._pending[0][0] <= applied:
                _, sent_ms = self._pending.popleft()
                self.latency_ms.append(item.arrival_ms - sent_ms)
        return received


class BotBrainLike(Protocol):
    """A full bot's input source: called once per server tick for the next input blob."""

    net_id: int | None
    shots: int

    def __call__(self) -> bytes: ...

    def bind(self, store: ColumnStore, net_id: int | None) -> None: ...


class BlindPilotLike(Protocol):
    """A lite bot's steering: blobs without decoding anything (see LiteBot)."""

    def next_input(self, applied_seq: int) -> tuple[bytes, bool]: ...

    def sent(self, seq: int, fire: bool, tick_s: float) -> None: ...


class BotKit(Protocol):
    """What a game gives the bot tools, as ``bot_kit`` in its package."""

    def brain(self, seed: int) -> BotBrainLike: ...

    def blind(self, seed: int) -> BlindPilotLike: ...


def bot_kit_of(game: Game) -> BotKit:
    """The ``bot_kit`` of ``game``'s module or the nearest package above it (the co-op game's
    class lives in ``astranet.examples.coop.game``; its kit in ``astranet.examples.coop``)."""
    module = type(game).__module__
    while module:
        if module not in sys.modules:
            importlib.import_module(module)
        kit = getattr(sys.modules[module], "bot_kit", None)
        if kit is not None:
            return kit
        module = module.rpartition(".")[0]
    raise ConfigurationError(
        f"--game: {type(game).__module__} exports no bot_kit (how its bots play: a brain and"
        " a blind pilot; see astranet.tools.bot.BotKit)"
    )


def _style_of(brain: object) -> str:
    """The brain's play style for the report, when it has one (``personality.style``)."""
    style = getattr(getattr(brain, "personality", None), "style", None)
    return str(getattr(style, "value", style)) if style is not None else ""


@dataclass(frozen=True, slots=True)
class BotReport:
    """What one bot saw; plain values so it crosses process boundaries as a dict."""

    bot: int  # global index: room_index * 4 + seat
    room_index: int
    room_id: str | None
    style: str
    joined: bool
    error: str | None = None  # why it could not join, or how the session ended early
    join_retries: int = 0  # joins retried because the socket did not open (fleet)
    kicked: bool = False
    close_code: int | None = None
    disconnects: int = 0
    reconnects: int = 0
    snapshots: int = 0
    snapshot_bytes: int = 0
    inputs_sent: int = 0
    shots: int = 0
    compared: int = 0  # reconciliations compared with a prediction
    exact: int = 0
    corrections: int = 0  # rewinds
    max_error: float = 0.0
    rtt_ms: float | None = None  # final smoothed RTT
    rtt_samples_ms: list[float] = field(default_factory=list)
    input_to_snapshot_ms: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BotReport:
        return cls(**data)


class Bot:
    """One player: client + world + brain (see the module docstring)."""

    def __init__(
        self,
        index: int,
        room_index: int,
        options: ClientOptions,
        game: Game,
        seed: int,
        kit: BotKit | None = None,
    ) -> None:
        """``kit``: how the bot plays (default: the game's own, :func:`bot_kit_of`)."""
        self.index = index
        self.room_index = room_index
        self.game = game
        self.seed = seed
        self.kit = kit if kit is not None else bot_kit_of(game)
        self.brain = self.kit.brain(seed)
        self.client = GameClient(options, on_event=self._on_event)
        self.link = MeasuredLink(self.client)
        self.world: ClientWorld | None = None
        self.joined = False
        self.room_id: str | None = None
        #: The party token of this bot's FindOrCreate (for followers' JoinRoom, WIRE A4).
        self.party_token: bytes | None = None
        self.error: str | None = None
        self.join_retries = 0  # set by the fleet (astranet.tools.fleet)
        self.disconnects = 0
        self.reconnects = 0
        self.rtt_samples: deque[float] = deque(maxlen=MAX_RTT_SAMPLES)
        self._next_rtt_ms = 0.0

    def _on_event(self, event: ClientEvent) -> None:
        if event.kind is EventKind.DISCONNECTED:
            self.disconnects += 1
        elif event.kind is EventKind.RECONNECTED:
            self.reconnects += 1

    async def join(self) -> str:
        """FindOrCreate, or JoinRoom when the options name a room; returns the room id.
        Raises the client's errors (``ConnectFailed``, ``RoomNotFound``, ...)."""
        accepted = await self.client.connect()
        self.room_id = accepted.room_id
        self.party_token = self.client.conn.party_token
        self.joined = True
        self.world = ClientWorld(
            self.game,
            self.link,
            self.brain,
            tick_hz=accepted.tick_hz,
            world=f"astranet.bot.{self.index}",
        )
        self.brain.bind(self.world.local.sim.store, accepted.entity)
        return accepted.room_id

    def step(self) -> None:
        """One frame: the world's systems (send, predict, reconcile, interpolate)."""
        world = self.world
        if world is None:
            return
        self.brain.net_id = world.local.net_id  # same entity after a resume; set once joined
        world.step()
        self._sample_rtt()

    def _sample_rtt(self) -> None:
        now_ms = self.client.now_ms()
        if now_ms >= self._next_rtt_ms:
            self._next_rtt_ms = now_ms + RTT_SAMPLE_INTERVAL_MS
            rtt = self.client.clock_estimate(now_ms).rtt_ms
            if rtt is not None:
                self.rtt_samples.append(rtt)

    async def close(self) -> None:
        await self.client.close()
        if self.world is not None:
            self.world.close()

    def _lost(self) -> str | None:
        """A session that dropped and had not resumed when the run ended (the server died,
        say) is lost, even though its client was still trying (give_up_after_s is 30 s)."""
        if self.disconnects > self.reconnects:
            return "disconnected and not resumed when the run ended"
        return None

    def report(self) -> BotReport:
        world, client = self.world, self.client
        error = client.error
        close_code = error.code if isinstance(error, ConnectionClosed) else None
        recon = world.reconciliation.stats if world is not None else None
        return BotReport(
            bot=self.index,
            room_index=self.room_index,
            room_id=self.room_id,
            style=_style_of(self.brain),
            joined=self.joined,
            error=self.error or (str(error) if error is not None else None) or self._lost(),
            join_retries=self.join_retries,
            kicked=close_code == KICK_CLOSE_CODE,
            close_code=close_code,
            disconnects=self.disconnects,
            reconnects=self.reconnects,
            snapshots=client.stats.snapshots,
            snapshot_bytes=client.stats.snapshot_bytes,
            inputs_sent=client.stats.inputs_sent,
            shots=self.brain.shots,
            compared=recon.compared if recon else 0,
            exact=recon.exact if recon else 0,
            corrections=recon.rewinds if recon else 0,
            max_error=recon.max_error if recon else 0.0,
            rtt_ms=client.clock_estimate(client.now_ms()).rtt_ms,
            rtt_samples_ms=list(self.rtt_samples),
            input_to_snapshot_ms=list(self.link.latency_ms),
        )
