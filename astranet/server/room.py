"""A room: one esper world, one column store, its players, stepped synchronously per tick.

Isolation: each room owns an esper world named ``astranet.room.<room_id>``. :meth:`Room.step`
switches to it, runs every processor (InputIngestion -> the game's systems ->
SnapshotReplication, ordered by :mod:`astranet.systems.stages`) and returns; nothing awaits in
between, so no other room's code can run inside this room's world.

Players: a :class:`Player` is the server's memory of one seat: the avatar's net id, the input
queue, the replication baseline and, while connected, the session that receives snapshots. A
player whose connection dropped keeps all of it (seat held for Resume) but gets no snapshots.

Unattended rooms: a room with no connected player (every seat held for Resume, or none yet) is
not stepped by the server (WIRE A4: "Rooms with no connected player are not simulated"): its
state stays frozen, nothing is captured, and the first player who comes back continues from
there with a full snapshot. :meth:`attended` is that test; :meth:`step` itself always steps, so
tools and tests can drive a room without sessions.

Limits: room capacity comes from the matchmaker (4); per-player work is Python, per-entity work
is the game's vectorised systems. Benchmark: benchmarks/server_load.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import is_
from typing import NamedTuple, Protocol

import esper
import numpy as np

from astranet.ecs import ColumnStore, WorldSwitch
from astranet.game import Game, SimContext
from astranet.net.limits import MAX_SNAPSHOT_PAYLOAD_BYTES
from astranet.net.messages import Events
from astranet.replication import (
    ClientBaseline,
    EncodedSnapshot,
    SnapshotFanout,
    SnapshotHistory,
)
from astranet.replication.events import EventOutbox
from astranet.replication.interest import (
    ENVELOPE_BYTES,
    MIN_BUDGET_BYTES,
    BudgetedEncoder,
    InterestBaseline,
)
from astranet.replication.rewind import Rewinder
from astranet.systems import (
    IngestionStats,
    InputIngestionSystem,
    InputQueue,
    SnapshotReplicationSystem,
    Stage,
    add_system,
)
from astranet.systems.events import CommandQueue, CommandSystem, EventRouter
from astranet.systems.snapshot_replication import InterestPolicy, ReplicationBatch

__all__ = ["Player", "Room", "SnapshotSink"]

log = logging.getLogger(__name__)


class SnapshotSink(Protocol):
    """The connected session of a player, as the room sees it."""

    def offer_snapshot(self, snapshot: EncodedSnapshot, last_input_seq: int | None) -> None:
        """Take this tick's snapshot without blocking (newest wins if the writer is behind)."""

    # Optional: ``wants_events`` (bool) and ``offer_events(Events)``, for the event channel.


@dataclass(eq=False, slots=True)
class Player:
    """One seat of a room, connected or held for Resume."""

    player_id: str
    net_id: int
    token_hash: bytes
    inputs: InputQueue
    baseline: ClientBaseline | InterestBaseline = field(default_factory=ClientBaseline)
    session: SnapshotSink | None = None
    #: The resume token before the last rotation, valid until the new one is proven (A4).
    previous_token_hash: bytes | None = None
    #: Highest seq the replay guard accepted (continues across Resume, WIRE rule 7).
    last_accepted_seq: int | None = None
    #: Interest mask hook (None: sees everything); see SnapshotSubscriber.visible.
    visible: np.ndarray | None = None
    #: Reliable game events waiting for this player (survives Resume; bounded).
    outbox: EventOutbox = field(default_factory=EventOutbox)
    #: Signed game commands waiting for the tick, and their replay guard (survives Resume).
    commands: CommandQueue = field(default_factory=CommandQueue)

    def deliver(self, snapshot: EncodedSnapshot) -> None:
        session = self.session
        if session is None:
            return
        if getattr(session, "wants_events", False):
            # Written just before the snapshot on the same stream: an ack of this snapshot
            # (or a later one) proves these events arrived.
            due = self.outbox.due(snapshot.id, snapshot.server_tick)
            if due:
                session.offer_events(
                    Events(due[0].seq, tuple((e.server_tick, e.type, e.data) for e in due))
                )
        session.offer_snapshot(snapshot, self.inputs.last_input_seq)


class EventCounts(NamedTuple):
    """A room's lag-compensation and event-channel counts (cumulative, or a difference)."""

    rewind_clamps: int  # views clamped to the rewind window or the newest snapshot
    event_resyncs: int  # outboxes that dropped their waiting events for one astranet.resync
    commands_refused: int  # by the game, the per-seat rate limit, or as replays


class Room:
    """One match: an esper world plus the replication state of its players."""

    def __init__(
        self,
        room_id: str,
        region: str,
        game_mode: str,
        game: Game,
        *,
        tick_hz: int = 30,
        checksum: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.room_id = room_id
        self.region = region
        self.game_mode = game_mode
        self.game = game
        self.tick_hz = tick_hz
        self.tick = 0
        #: Added to the server tick in :meth:`step`: a room restored on a running node (room
        #: failover) continues its own numbering, above what its previous node sent.
        self.tick_offset = 0
        self.world = f"astranet.room.{room_id}"
        self.players: dict[str, Player] = {}
        self.store = ColumnStore(game.schema)
        self.sim = SimContext(self.store, 0, 1.0 / tick_hz, room_id, authoritative=True)
        self.history = SnapshotHistory(self.store)
        self.fanout = SnapshotFanout(game.schema, self.history, checksum=checksum)
        self.events = self.sim.events = EventRouter(self._outboxes)
        self.sim.rewinder = Rewinder(
            game.schema, self.history, tick_hz, max_rewind_ms=getattr(game, "max_rewind_ms", 500.0)
        )
        self.ingestion = IngestionStats()
        self.reported = IngestionStats()  # the part of `ingestion` already in /metrics
        self._resyncs_gone = 0  # event-outbox resyncs of players who have left
        self._event_counts_seen = EventCounts(0, 0, 0)
        self.empty_since: float | None = clock()
        self._clock = clock
        self._switch = WorldSwitch(self.world)  # entered every step: one object, reused
        self._processors_seen: tuple[esper.Processor, ...] = ()
        self._named_processors: tuple[tuple[esper.Processor, str], ...] = ()
        try:
            with self.activated():
                add_system(
                    InputIngestionSystem(game, self._input_queues, self.ingestion), Stage.INPUT
                )
                self.commands = add_system(
                    CommandSystem(game, self._command_queues, tick_hz), Stage.INPUT, 1
                )
                self.replication = add_system(
                    SnapshotReplicationSystem(
                        self.history, self.fanout, self.connected_players, self._interest_policy()
                    ),
                    Stage.REPLICATE,
                )
                game.setup(self.sim)
        except BaseException:
            self.close()  # a half-set-up world must not outlive the failed request
            raise

    # -- structure -------------------------------------------------------------------------

    def _interest_policy(self) -> InterestPolicy | None:
        """The budgeted encoder, when the game manages interest (Game.uses_interest)."""
        game = self.game
        if not getattr(game, "uses_interest", False):
            return None
        per_s = game.snapshot_budget_bytes_per_s
        budget = MAX_SNAPSHOT_PAYLOAD_BYTES
        if per_s is not None:
            budget = min(budget, max(MIN_BUDGET_BYTES, per_s // self.tick_hz - ENVELOPE_BYTES))
        return InterestPolicy(BudgetedEncoder(game.schema), game.relevance, budget)

    def _new_baseline(self) -> ClientBaseline | InterestBaseline:
        return InterestBaseline() if self.replication.interest else ClientBaseline()

    def activated(self) -> WorldSwitch:
        """Context manager: make this room's world esper's current one."""
        return WorldSwitch(self.world)

    def add_player(self, player_id: str, token_hash: bytes) -> Player:
        """Spawn the avatar (game code). If ``spawn_player`` raises, whatever it had already
        spawned into the store is removed again and the exception propagates."""
        before = self.store.net_ids.copy()
        with self.activated():
            try:
                net_id = int(self.game.spawn_player(self.sim, player_id))
            except BaseException:
                self._discard_spawned_since(before, player_id)
                raise
        player = Player(
            player_id, net_id, token_hash, InputQueue(player_id, net_id), self._new_baseline()
        )
        self.players[player_id] = player
        self.empty_since = None
        return player

    def restore_player(
        self, player_id: str, net_id: int, token_hash: bytes, last_input_seq: int | None
    ) -> Player:
        """Re-seat a player from storage (crash recovery); the avatar is in the checkpoint."""
        player = Player(
            player_id,
            net_id,
            token_hash,
            InputQueue(player_id, net_id, last_input_seq),
            self._new_baseline(),
            last_accepted_seq=last_input_seq,
        )
        self.players[player_id] = player
        self.empty_since = None
        return player

    def drain_event_counts(self) -> EventCounts:
        """Rewind clamps, event-outbox resyncs and refused commands since the last call (for
        /metrics: ``RoomHost.report_room_counts``)."""
        resyncs = self._resyncs_gone + sum(p.outbox.resyncs for p in self.players.values())
        now = EventCounts(self.sim.rewinder.clamped, resyncs, self.commands.refused)
        seen, self._event_counts_seen = self._event_counts_seen, now
        return EventCounts(*(a - b for a, b in zip(now, seen, strict=True)))

    def remove_player(self, player_id: str) -> bool:
        """Despawn the avatar and free the player record (Leave, or a held seat expired).

        A raising ``despawn_player`` costs only that avatar: it is logged and the library's
        default despawn removes the avatar instead. Returns False when the game's code raised.
        """
        player = self.players.pop(player_id, None)
        if player is None:
            return True
        self._resyncs_gone += player.outbox.resyncs
        if not self.players:
            self.empty_since = self._clock()
        with self.activated():
            try:
                self.game.despawn_player(self.sim, player_id, player.net_id)
            except Exception:
                log.exception("room %s: despawn_player(%s) raised", self.room_id, player_id)
                Game.despawn_player(self.game, self.sim, player_id, player.net_id)
                return False
        return True

    def _discard_spawned_since(self, before: np.ndarray, player_id: str) -> None:
        new_ids = np.setdiff1d(self.store.net_ids, before, assume_unique=True)
        for net_id in new_ids.tolist():
            Game.despawn_player(self.game, self.sim, player_id, int(net_id))

    def close(self) -> None:
        """Delete the room's esper world (the room must not be stepped afterwards)."""
        if esper.current_world == self.world:
            esper.switch_world("default")
        if self.world in esper.list_worlds():
            esper.delete_world(self.world)

    # -- the tick --------------------------------------------------------------------------

    def step(
        self,
        tick: int,
        batch: ReplicationBatch | None = None,
        timings: dict[str, float] | None = None,
    ) -> dict[str, float]:
        """Run server tick ``tick`` of this room (its own tick is ``tick + tick_offset``);
        returns seconds spent per system (by class name), added to ``timings`` when given
        (the server sums every room's: no dict per room to merge).

        With a ``batch`` the snapshots are captured and planned but encoded and delivered only
        when the batch flushes, together with the other rooms' (the server's tick); without,
        before this returns.
        """
        tick += self.tick_offset
        self.replication.batch = batch
        self.tick = tick
        self.sim.tick = tick
        self.events.tick = tick
        if timings is None:
            timings = {}
        with self._switch:
            # esper.process() plus per-system timing. esper's own timed_process() records
            # whole milliseconds of CPU time, too coarse for a 33 ms budget, so we time with
            # perf_counter over the world's processor list (already sorted by priority).
            esper.clear_dead_entities()
            sim = self.sim
            clock = time.perf_counter
            started = clock()
            for processor, name in self._timed_processors():
                processor.process(sim)
                # One clock read per system: this one's end is the next one's start (the
                # bookkeeping between them is charged to the system before).
                ended = clock()
                timings[name] = timings.get(name, 0.0) + (ended - started)
                started = ended
        return timings

    def _timed_processors(self) -> tuple[tuple[esper.Processor, str], ...]:
        """The current world's processors, in order, with their class names.

        Made again only when the world's processor list changed (a system added or removed:
        rare); a tuple, so a system that adds one mid-tick does not change this tick's loop.
        """
        processors = esper._processors  # private, read-only: see step
        named = self._named_processors
        # Same processors, by identity (a processor's own __eq__ may compare fields).
        if len(processors) != len(named) or not all(map(is_, processors, self._processors_seen)):
            self._processors_seen = tuple(processors)
            named = self._named_processors = tuple((p, type(p).__name__) for p in processors)
        return named

    def attended(self) -> bool:
        """Whether any player is connected (the server steps only attended rooms)."""
        # A plain loop: every room asks this every tick, and any(genexpr) is ~5x slower.
        for player in self.players.values():  # noqa: SIM110 (speed, see above)
            if player.session is not None:
                return True
        return False

    def _command_queues(self) -> Iterator[tuple[str, int, CommandQueue]]:
        return ((p.player_id, p.net_id, p.commands) for p in self.players.values())

    def _outboxes(self) -> dict[str, EventOutbox]:
        return {player_id: p.outbox for player_id, p in self.players.items()}

    def connected_players(self) -> list[Player]:
        # A list comprehension: the replication system asks every tick, and a generator
        # drained by list() costs a frame switch per player.
        return [p for p in self.players.values() if p.session is not None]

    def _input_queues(self) -> Iterator[InputQueue]:
        return (p.inputs for p in self.players.values())
