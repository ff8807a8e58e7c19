"""GameClient: the asyncio shell around the sans-I/O ``ClientConnection``, with reconnection.

What it does, per socket: say Hello, FindOrCreate (or JoinRoom), wait for JoinAccepted; then a
*reader* (socket -> ``ClientConnection.receive_data`` -> snapshots to the inbox, Pongs to the
:class:`~astranet.net.clock.ServerClock`), a *writer* (woken by an event, writes
``data_to_send()``) and a *pinger* (a Ping every ``ping_interval_s``). Game code hands inputs
and acks over with :meth:`send_input` / :meth:`ack` and takes snapshots with
:meth:`drain_snapshots`; these and :meth:`clock_estimate` / :meth:`drain_events` are
thread-safe (one lock around the sans-I/O state; the writer is woken with
``call_soon_threadsafe``), so a non-asyncio game loop can run this client in a background
thread (:class:`astranet.client.threaded.ThreadedClient`).

One message per tick (WIRE A1): :meth:`ack` only remembers the newest applied snapshot id; the
next :meth:`send_input` folds it into its ``InputFrame``. A client that sends no input still
acks: an ack left waiting ``ACK_HOLD_PERIODS`` periods goes out as a separate ``Ack`` when the
next snapshot arrives. ``Hello`` asks for the compact Snapshot envelope
(``ClientOptions.compact_envelope``).

Inputs timed to the tick (``ClientOptions.input_pacing``, default on): a
:class:`~astranet.client.pacing.TickPacer` learns the server's tick phase from snapshot
arrivals and :meth:`input_steps_due` tells the prediction system when to produce each input, so
it reaches the server just before the tick that applies it; the pacer learns its lead from the
acknowledging snapshots (hit or miss of each input's target tick).

Reconnection (WIRE rule 7): when the socket drops abnormally (no close frame, 1001/1011-1014,
or the server silent for ``silence_timeout_s``) the client emits DISCONNECTED, then retries with
:class:`~astranet.net.backoff.Backoff` (exponential, jittered), each attempt Hello + Resume
(same player, entity and token; seq numbering continues); success emits RECONNECTED with the
downtime and starts a new *epoch* (snapshots carry it, so the systems restart prediction from
the full snapshot that follows). After ``give_up_after_s`` (default 30 s, the server's seat
hold) or a ``resume_denied``/``room_lost`` it emits GAVE_UP and sets ``error``
(:class:`ReconnectGaveUp` or the refusal). Closes the server means (1000 after Leave, 1002,
1008 kicks, 1009) are final, and so is the 1011 that follows a ``room_failed`` reply (``error``
is then ``RoomFailed``).

Failover (WIRE A3): each backoff delay starts a round over the candidate nodes -- first the one
that served us, then ``url``, ``fallback_urls``, nodes seen in redirects and, when
``nodes_url`` is set, the live nodes ``GET /nodes`` lists. A node that refuses the connection
(down) is skipped at once for the next; the first node that answers ends the round. A
redirecting ``MatchResult{url}`` is followed at once (at most MAX_REDIRECTS per attempt). A
room whose node died is restored by the first live node its Resume reaches after the cluster
declares the node dead; until then live nodes redirect to the dead one, so rounds repeat with
backoff for up to the dead-node deadline.

Limits: ``MAX_INBOX_SNAPSHOTS`` unconsumed snapshots (the oldest is dropped: it was never
acked, so no delta depends on it), ``MAX_EVENTS`` events, ``MAX_PINGS_IN_FLIGHT`` pings.
Benchmark: benchmarks/netcode_feel.py (end to end).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection as WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.exceptions import WebSocketException

from astranet.client.events import (
    ClientEvent,
    ClientOptions,
    ClientStats,
    ConnectFailed,
    EventKind,
    ReconnectGaveUp,
    server_error,
)
from astranet.client.pacing import TickPacer
from astranet.errors import (
    AstranetError,
    ConnectionClosed,
    InvalidState,
    RemoteProtocolError,
    ResumeDenied,
    RoomFailed,
    RoomLost,
    SchemaMismatch,
)
from astranet.net import ClientConnection, ClientPhase
from astranet.net.backoff import Backoff
from astranet.net.clock import ServerClock
from astranet.net.limits import MAX_MESSAGE_BYTES
from astranet.net.messages import (
    ErrorMessage,
    Events,
    JoinAccepted,
    MatchResult,
    Pong,
    RateLimited,
    Snapshot,
)
from astranet.replication.events import EventInbox, GameEvent
from astranet.systems.contract import ClockEstimate, ReceivedSnapshot

__all__ = [
    "ACK_HOLD_PERIODS",
    "CLOSE_TIMEOUT_S",
    "MAX_EVENTS",
    "MAX_INBOX_SNAPSHOTS",
    "MAX_PINGS_IN_FLIGHT",
    "GameClient",
    "received_snapshot",
]

# 64 snapshots = 2 s at 30 Hz: a game loop that falls further behind has bigger problems, and
# dropping the oldest unacked ones is safe.
MAX_INBOX_SNAPSHOTS = 64
# Game events held for a game that does not drain them (ClientWorld drains every frame): the
# outbox bound on the server side, so one resync's worth fits.
MAX_GAME_EVENTS = 256
MAX_EVENTS = 256  # a reconnect storm of 30 s at the 1 s backoff cap is ~100 events
# An ack not folded into an input within 1.5 periods (a client that sends no input) goes out
# alone, so the server's delta bases keep moving.
ACK_HOLD_PERIODS = 1.5
MAX_PACED_INPUTS = 64  # inputs awaiting their acknowledging snapshot (2 s at 30 Hz)
MAX_PINGS_IN_FLIGHT = 16  # 16 s of unanswered 1 Hz pings; older ones are forgotten
CLOSE_TIMEOUT_S = 2.0  # Leave -> the server closes 1000 within one RTT; don't wait forever
MAX_REDIRECTS = 3  # per attempt: owner -> restorer is one hop; more means a routing loop
MAX_KNOWN_NODES = 64  # candidate URLs kept for failover (a /nodes list is bounded too)
NODES_TIMEOUT_S = 2.0  # GET /nodes during a reconnect: short, the backoff retries
MAX_NODES_BYTES = 1 << 20  # a /nodes body larger than this is not a node list
# Close codes after which resuming makes sense: the network or the server process failed.
_RESUMABLE_CLOSES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})


def received_snapshot(
    message: Snapshot, arrival_ms: float, epoch: int, entity: int | None
) -> ReceivedSnapshot:
    """The client contract's copy of a wire ``Snapshot`` (the systems never see the message)."""
    return ReceivedSnapshot(
        message.id,
        message.server_tick,
        message.base_id,
        message.compressed,
        message.payload,
        message.last_input_seq,
        arrival_ms,
        epoch,
        entity,
    )


class GameClient:
    """One player's connection to an astranet server (see the module docstring)."""

    def __init__(
        self,
        options: ClientOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[ClientEvent], None] | None = None,
    ) -> None:
        """``clock`` (seconds, monotonic) stamps arrivals and pings; ``on_event`` is called
        on the network loop for every event (keep it short; it must not block)."""
        self.options = options or ClientOptions()
        self.on_event = on_event
        self.conn = ClientConnection(
            clock=clock,
            max_message_bytes=MAX_MESSAGE_BYTES,
            schema_fingerprint=self.options.schema,
        )
        self.stats = ClientStats()
        self.server_clock: ServerClock | None = None
        self.epoch = 0
        self.error: AstranetError | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._inbox: deque[ReceivedSnapshot] = deque()
        self._events: deque[ClientEvent] = deque(maxlen=MAX_EVENTS)  # drained by the game
        self._log: deque[ClientEvent] = deque(maxlen=MAX_EVENTS)  # for wait_for
        self._numbers = itertools.count(1)
        self._pings: dict[int, float] = {}
        self._nonces = itertools.count(1)
        self._ws: WebSocket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None  # threading.get_ident() of the loop's thread
        self._wake = _WriterWake()
        self._event_added = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        #: The node (ws URL) serving us now; failover candidates follow it (see module doc).
        self.served_url = self.options.url
        self._known_urls: list[str] = []
        self._remember_url(self.options.url, *self.options.fallback_urls)
        #: Set by a ``room_failed`` reply: the close that follows is final (the room is gone).
        self._final_error: AstranetError | None = None
        self._view: tuple[int, int] | None = None
        self.pacer: TickPacer | None = None  # per session, when options.input_pacing
        self._paced: deque[tuple[int, int]] = deque(maxlen=MAX_PACED_INPUTS)  # (seq, target)
        self._pending_ack: int | None = None  # newest applied snapshot id not yet sent
        self._pending_ack_ms = 0.0
        self._period_ms = 1000.0 / 30
        # Game events: deduplicated across resumes (the inbox outlives every socket) and
        # kept until the game drains them; beyond the bound the oldest go (counted).
        self._event_inbox = EventInbox()
        self._game_events: deque[GameEvent] = deque(maxlen=MAX_GAME_EVENTS)

    # -- thread-safe API for the game loop ---------------------------------------------------

    def now_ms(self) -> float:
        """The client clock in ms (the clock ``clock_estimate`` and arrivals use)."""
        return self._clock() * 1000.0

    def set_view(self, view: tuple[int, int] | None) -> None:
        """The ``(view_tick, view_frac)`` the following inputs state (lag compensation);
        ``ClientWorld`` sets it after every frame from what it drew. None: state no view."""
        self._view = view

    def send_input(self, blob: bytes) -> int | None:
        """Sign and send one input (with the pending ack folded in); its seq, or None when not
        in a room (reconnecting)."""
        with self._lock:
            if self.conn.phase is not ClientPhase.IN_ROOM:
                self.stats.inputs_refused += 1
                return None
            try:
                seq = self.conn.send_input(blob, view=self._view, ack=self._pending_ack)
            except InvalidState:  # the writer is stuck (send queue full): treat as offline
                self.stats.inputs_refused += 1
                return None
            self._pending_ack = None
            target = self.pacer.take_target() if self.pacer is not None else None
            if target is not None:
                self._paced.append((seq, target))
            self.stats.inputs_sent += 1
        self._poke()
        return seq

    def ack(self, snapshot_id: int) -> None:
        """Acknowledge an applied snapshot: it rides on the next input (ignored while not in a
        room; an older id than one already pending is dropped, the newest ack wins)."""
        with self._lock:
            if self.conn.phase is not ClientPhase.IN_ROOM:
                return
            if self._pending_ack is None:
                self._pending_ack_ms = self.now_ms()
            elif snapshot_id <= self._pending_ack:
                return
            self._pending_ack = snapshot_id

    def next_input_due_ms(self) -> float | None:
        """Client-clock ms when the next paced input falls due (None: no schedule yet, or
        pacing off). A frame loop may wake then instead of at its own frame phase."""
        with self._lock:
            return None if self.pacer is None else self.pacer.next_deadline_ms()

    def input_steps_due(self, now_ms: float) -> int | None:
        """How many inputs to produce now so they reach the server just before its ticks;
        None when pacing is off (the caller keeps its own fixed-step clock)."""
        with self._lock:
            return None if self.pacer is None else self.pacer.steps_due(now_ms)

    def drain_snapshots(self) -> list[ReceivedSnapshot]:
        with self._lock:
            snapshots = list(self._inbox)
            self._inbox.clear()
        return snapshots

    def send_command(self, command_type: str, data: bytes = b"") -> int | None:
        """Sign and send one game command (validated by the server's ``Game.on_command``);
        its seq, or None when not in a room or the server offers no event channel."""
        with self._lock:
            if self.conn.phase is not ClientPhase.IN_ROOM or not self.conn.events_granted:
                return None
            try:
                seq = self.conn.send_command(command_type, data)
            except InvalidState:
                return None
        self._poke()
        return seq

    def drain_game_events(self) -> list[GameEvent]:
        """Reliable game events received since the last call, each once, in order."""
        with self._lock:
            events = list(self._game_events)
            self._game_events.clear()
        return events

    def drain_events(self) -> list[ClientEvent]:
        with self._lock:
            events = list(self._events)
            self._events.clear()
        return events

    def clock_estimate(self, now_ms: float) -> ClockEstimate:
        with self._lock:
            clock = self.server_clock
            if clock is None:
                return ClockEstimate(None, None, None, None)
            tick = clock.estimated_server_tick(now_ms) if clock.synced else None
            return ClockEstimate(tick, clock.rtt.srtt_ms, clock.rtt.rttvar_ms, int(clock.tick_hz))

    @property
    def event_count(self) -> int:
        """Number of the newest event so far (0 before any): a mark for :meth:`wait_for`."""
        return self._log[-1].number if self._log else 0

    # -- asyncio API -------------------------------------------------------------------------

    async def connect(self) -> JoinAccepted:
        """Connect and join; raises ConnectFailed or the server's refusal (RoomNotFound...)."""
        if self._task is not None:
            raise InvalidState("GameClient.connect() called twice")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        options = self.options
        ws = await self._open()
        self._emit(EventKind.CONNECTED, options.url)
        with self._lock:
            self.conn.hello(token=options.token, compact=options.compact_envelope, events=True)
            if options.room_id is not None:
                self.conn.join_room(options.room_id, options.party_token)
            else:
                self.conn.find_or_create(options.region, options.game_mode, options.party_size)
        url = options.url
        for hop in range(MAX_REDIRECTS + 1):
            try:
                accepted = await self._handshake(ws)
                break
            except _Redirect as redirect:
                # A2: the room lives on another node; take the held seat there.
                if hop == MAX_REDIRECTS or redirect.match is None:
                    raise RemoteProtocolError(
                        f"more than {MAX_REDIRECTS} redirects joining a room"
                    ) from None
                url = redirect.url
                self._remember_url(url)
                self.stats.redirects += 1
                ws = await self._open(url)
                with self._lock:
                    self.conn.reset_transport()
                    self.conn.hello(token=options.token, compact=options.compact_envelope)
                    self.conn.join_room(
                        redirect.match.room_id,
                        options.party_token,
                        seat_token=redirect.match.seat_token,
                    )
        self.served_url = url
        self._attach(ws, accepted)
        self._emit(
            EventKind.JOINED,
            "",
            room_id=accepted.room_id,
            player_id=accepted.player_id,
            entity=accepted.entity,
        )
        self._task = asyncio.create_task(self._run(), name="astranet-client")
        return accepted

    async def wait_for(self, kind: EventKind, *, after: int = 0) -> ClientEvent:
        """The first event of ``kind`` numbered above ``after``, waiting for it (bound the
        wait with ``asyncio.timeout``)."""
        while True:
            for event in self._log:
                if event.number > after and event.kind is kind:
                    return event
            self._event_added.clear()
            await self._event_added.wait()

    async def wait_closed(self) -> None:
        """Until the session is over (closed, gave up, or a final close)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Leave the room and close the socket (bounded by CLOSE_TIMEOUT_S)."""
        self._closing = True
        with self._lock, contextlib.suppress(InvalidState):
            self.conn.leave()
        self._poke()
        task = self._task
        if task is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._ws is not None:
            await self._ws.close()

    # -- internals: sockets ------------------------------------------------------------------

    async def _open(self, url: str | None = None) -> WebSocket:
        url = url or self.options.url
        try:
            return await connect(
                url,
                open_timeout=self.options.open_timeout_s,
                max_size=MAX_MESSAGE_BYTES,
                compression=None,
                proxy=None,
                ping_interval=None,
                close_timeout=CLOSE_TIMEOUT_S,
            )
        except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
            raise ConnectFailed(url, str(exc) or type(exc).__name__) from exc

    async def _handshake(self, ws: WebSocket) -> JoinAccepted:
        """Flush Hello + join request; read until JoinAccepted (raises the server's refusal)."""
        try:
            async with asyncio.timeout(self.options.join_timeout_s):
                await self._flush(ws)
                while True:
                    data = await ws.recv()
                    if isinstance(data, str):
                        raise RemoteProtocolError("server sent a text frame")
                    for message in self._receive(data):
                        if isinstance(message, JoinAccepted):
                            return message
                        if isinstance(message, MatchResult) and message.url is not None:
                            raise _Redirect(message.url, message)
                    close = self.conn.close_expected()
                    if close is not None:
                        if isinstance(self.conn.last_error, SchemaMismatch):
                            raise self.conn.last_error
                        raise RemoteProtocolError(close[1], close_code=close[0])
        except BaseException:
            await ws.close()
            raise

    async def _flush(self, ws: WebSocket) -> None:
        with self._lock:
            writes = self.conn.data_to_send()
        for data in writes:
            await ws.send(data)

    def _attach(self, ws: WebSocket, accepted: JoinAccepted) -> None:
        self._ws = ws
        with self._lock:
            self.epoch += 1
            # A fresh clock per session: a restarted server may number its ticks anew, and
            # the pinger's first Ping (sent at once) re-syncs within one RTT. The same for
            # the tick phase (re-learnt from the first snapshots).
            self.server_clock = ServerClock(accepted.tick_hz)
            self._period_ms = 1000.0 / accepted.tick_hz
            self.pacer = TickPacer(accepted.tick_hz) if self.options.input_pacing else None
            self._paced.clear()
            self._pending_ack = None

    async def _run(self) -> None:
        """Serve the socket; on a resumable drop, reconnect; repeat until final."""
        try:
            while True:
                assert self._ws is not None
                code, reason = await self._serve(self._ws)
                final = self._final_error is not None
                if (
                    self._closing
                    or final
                    or code not in _RESUMABLE_CLOSES
                    or not self.options.reconnect
                ):
                    if self._final_error is not None:
                        self.error = self._final_error
                    elif not self._closing and code != 1000:
                        self.error = ConnectionClosed(code, reason)
                    self._emit(EventKind.CLOSED, f"{code} {reason}".rstrip())
                    return
                self._emit(EventKind.DISCONNECTED, f"{code} {reason}".rstrip())
                if not await self._reconnect(reason or f"closed {code}"):
                    return
        finally:
            with self._lock:
                self.conn.fail(1000, "client done")

    async def _serve(self, ws: WebSocket) -> tuple[int, str]:
        """Run reader, writer and pinger until one ends; returns the close (code, reason)."""
        self._wake.set()  # flush whatever was queued meanwhile
        reader = asyncio.create_task(self._read_loop(ws))
        others = [asyncio.create_task(self._write_loop(ws)), asyncio.create_task(self._ping_loop())]
        await asyncio.wait([reader, *others], return_when=asyncio.FIRST_COMPLETED)
        if not reader.done():
            # The writer met the closed socket first. Only the reader learns *how* it closed
            # (the server's close frame: a 1008 kick is final, a 1006 drop is resumable), and
            # it learns it at once; taking the writer's "closed" as a lost connection made a
            # kicked client resume (and get kicked again).
            await asyncio.wait([reader], timeout=CLOSE_TIMEOUT_S)
        pending = [task for task in (reader, *others) if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        result = reader.result() if reader.done() and not reader.cancelled() else None
        if ws.close_code is None:
            ws.transport.abort()  # a silent link: do not wait for a closing handshake
        with self._lock:
            self.conn.reset_transport()  # send_input now returns None until resumed
            self._pings.clear()
            self._pending_ack = None  # acks of this session mean nothing to the next
        return result if result is not None else (1006, "connection lost")

    async def _read_loop(self, ws: WebSocket) -> tuple[int, str]:
        silence_s = self.options.silence_timeout_s
        loop = asyncio.get_running_loop()
        heard = loop.time()  # when the server last spoke (loop clock)
        close: tuple[int, str] | None = None
        while close is None:
            # One timer per silence window, not one per message (an asyncio.timeout around
            # every recv was ~3 % of a LiteBot worker's CPU): it fires at the window's end and,
            # if the server spoke meanwhile, the next window ends silence_s after its last
            # message -- the same deadline as before. Cancelling recv() loses no data
            # (websockets documents it), so the timer may interrupt it.
            try:
                async with asyncio.timeout_at(heard + silence_s):
                    while close is None:
                        data = await ws.recv()
                        heard = loop.time()
                        if isinstance(data, str):
                            with self._lock:
                                self.conn.fail(1003, "text frame from server")
                        else:
                            self._receive(data)
                        close = self.conn.close_expected()
            except TimeoutError:
                if loop.time() - heard >= silence_s:
                    return 1006, f"server silent for {silence_s} s"
            except WsConnectionClosed as exc:
                return _close_of(exc)
        self._wake.set()
        with contextlib.suppress(WsConnectionClosed):
            await ws.close(*close)
        return close

    async def _write_loop(self, ws: WebSocket) -> None:
        try:
            while True:
                await self._wake.wait()
                await self._flush(ws)
        except WsConnectionClosed:
            return  # the reader reports how it closed

    async def _ping_loop(self) -> None:
        # A timer, not synchronisation: the ping rate is the point.
        while True:
            now_ms = self.now_ms()
            nonce = next(self._nonces)
            with self._lock:
                if self.conn.phase is ClientPhase.IN_ROOM:
                    self.conn.ping(nonce, int(now_ms))
                    self._pings[nonce] = now_ms
                    while len(self._pings) > MAX_PINGS_IN_FLIGHT:
                        del self._pings[next(iter(self._pings))]
            self._wake.set()
            await asyncio.sleep(self.options.ping_interval_s)

    def _receive(self, data: bytes) -> list[object]:
        """Feed one message to the protocol; route snapshots and pongs (one lock hold)."""
        now_ms = self.now_ms()
        with self._lock:
            self.conn.receive_data(data)
            messages = self.conn.messages_received()
            for message in messages:
                if isinstance(message, Snapshot):
                    self._inbox.append(
                        received_snapshot(message, now_ms, self.epoch, self.conn.entity)
                    )
                    self._pace(message, now_ms)
                    self.stats.snapshots += 1
                    self.stats.snapshot_bytes += len(message.payload)
                    if len(self._inbox) > MAX_INBOX_SNAPSHOTS:
                        self._inbox.popleft()
                        self.stats.snapshots_dropped += 1
                elif isinstance(message, Pong):
                    sent_ms = self._pings.pop(message.nonce, None)
                    if sent_ms is not None and self.server_clock is not None:
                        self.server_clock.add_pong(
                            sent_ms, now_ms, message.server_time_ms, message.server_tick
                        )
                        self.stats.pongs += 1
                elif isinstance(message, Events):
                    fresh = self._event_inbox.accept(
                        [
                            GameEvent(message.first_seq + i, tick, kind, data)
                            for i, (tick, kind, data) in enumerate(message.events)
                        ]
                    )
                    self._game_events.extend(fresh)
                elif isinstance(message, RateLimited):
                    self.stats.rate_limited += 1
        for message in messages:
            if isinstance(message, ErrorMessage):
                if self.conn.phase in (ClientPhase.IN_ROOM, ClientPhase.CLOSED):
                    if message.code == RoomFailed.code:
                        self._final_error = server_error(message)
                    self._emit(EventKind.SERVER_ERROR, f"{message.code}: {message.message}")
                else:
                    raise server_error(message)
        return messages

    def _pace(self, message: Snapshot, now_ms: float) -> None:
        """Per snapshot (lock held): tick phase, hit/miss of paced inputs, a lone Ack."""
        pacer = self.pacer
        if pacer is not None:
            pacer.observe_snapshot(now_ms, message.server_tick)
            applied = message.last_input_seq
            paced = self._paced
            while paced and applied is not None and paced[0][0] <= applied:
                pacer.observe_applied(paced.popleft()[1], message.server_tick)
        pending = self._pending_ack
        if pending is not None and now_ms - self._pending_ack_ms >= (
            ACK_HOLD_PERIODS * self._period_ms
        ):
            with contextlib.suppress(InvalidState):
                self.conn.ack(pending)  # no input carried it: send it alone
            self._pending_ack = None
            self._wake.set()

    # -- internals: reconnection -------------------------------------------------------------

    async def _reconnect(self, cause: str) -> bool:
        options = self.options
        backoff = Backoff(
            options.backoff_initial_s,
            max(options.backoff_max_s, options.backoff_initial_s),
            give_up_after_s=options.give_up_after_s,
            rng=random.Random(options.seed),
        )
        lost_at = self._clock()
        tried: list[str] = []  # this episode's attempts, for the order of candidates
        while not backoff.expired(self._clock() - lost_at):
            remaining = options.give_up_after_s - (self._clock() - lost_at)
            delay = max(0.0, min(backoff.next_delay(), remaining))
            self._emit(EventKind.RECONNECTING, cause, attempt=backoff.attempt, delay_s=delay)
            await asyncio.sleep(delay)  # the backoff delay itself is the point
            if backoff.attempt == 2 and options.nodes_url is not None:
                await self._discover_nodes()  # the serving node failed once: who else is up?
            # One round per backoff delay: a node that refuses the connection (it is down) is
            # skipped at once for the next candidate; a node that answered ends the round.
            for _ in range(len(self._candidates())):
                url = self._next_candidate(tried)
                tried.append(url)
                try:
                    ws, accepted, url = await self._resume_at(url)
                except (ResumeDenied, RoomLost, SchemaMismatch) as exc:
                    self.error = exc
                    self._emit(EventKind.GAVE_UP, str(exc))
                    return False
                except ConnectFailed as exc:
                    cause = exc.reason or type(exc).__name__
                    continue
                except (AstranetError, OSError, TimeoutError, WebSocketException) as exc:
                    cause = exc.reason if isinstance(exc, ConnectionClosed) else str(exc)
                    cause = cause or type(exc).__name__
                    break
                self._attach(ws, accepted)
                self.served_url = url
                self.stats.reconnects += 1
                self._emit(
                    EventKind.RECONNECTED,
                    url,
                    room_id=accepted.room_id,
                    player_id=accepted.player_id,
                    entity=accepted.entity,
                    attempt=backoff.attempt,
                    downtime_s=self._clock() - lost_at,
                )
                return True
        self.error = ReconnectGaveUp(options.give_up_after_s, cause)
        self._emit(EventKind.GAVE_UP, str(self.error))
        return False

    async def _resume_at(self, url: str) -> tuple[WebSocket, JoinAccepted, str]:
        """Hello + Resume at ``url``, following redirects; returns the socket, the answer and
        the URL of the node that accepted."""
        for _ in range(MAX_REDIRECTS + 1):
            ws = await self._open(url)
            with self._lock:
                self.conn.reset_transport()
                self.conn.hello(
                    token=self.options.token, compact=self.options.compact_envelope, events=True
                )
                self.conn.resume()
            try:
                return ws, await self._handshake(ws), url
            except _Redirect as redirect:
                url = redirect.url
                self._remember_url(url)
        raise RemoteProtocolError(f"more than {MAX_REDIRECTS} redirects resuming the room")

    def _candidates(self) -> list[str]:
        """The serving node first, then every other known node."""
        return [self.served_url, *(u for u in self._known_urls if u != self.served_url)]

    def _next_candidate(self, tried: list[str]) -> str:
        """The candidates in turn, then around again."""
        candidates = self._candidates()
        return candidates[len(tried) % len(candidates)]

    def _remember_url(self, *urls: str) -> None:
        for url in urls:
            if url and url not in self._known_urls and len(self._known_urls) < MAX_KNOWN_NODES:
                self._known_urls.append(url)

    async def _discover_nodes(self) -> None:
        """Add the live nodes of ``GET nodes_url`` (A2 ``/nodes``) to the candidates."""
        url = self.options.nodes_url
        assert url is not None
        try:
            nodes = await asyncio.wait_for(asyncio.to_thread(_fetch_json, url), NODES_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            self._emit(EventKind.SERVER_ERROR, f"cannot read {url}: {exc}")
            return
        if isinstance(nodes, list):
            self._remember_url(
                *(n["url"] for n in nodes if isinstance(n, dict) and isinstance(n.get("url"), str))
            )

    # -- internals: events -------------------------------------------------------------------

    def _emit(self, kind: EventKind, detail: str, **fields: object) -> None:
        event = ClientEvent(next(self._numbers), kind, detail, **fields)  # type: ignore[arg-type]
        with self._lock:
            self._events.append(event)
            self._log.append(event)
        self._event_added.set()
        if self.on_event is not None:
            self.on_event(event)

    def _poke(self) -> None:
        """Wake the writer from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            # On the loop's own thread (the asyncio API, a bot fleet): set it directly.
            # call_soon_threadsafe would also write to the loop's self-pipe, a syscall per
            # input (~10 % of a LiteBot worker's CPU).
            self._wake.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            loop.call_soon_threadsafe(self._wake.set)


class _WriterWake:
    """The writer's wake-up: an edge-triggered asyncio.Event for one waiter.

    Why not ``asyncio.Event``: it is woken once per input (30 a second per client), and
    Event's bookkeeping per wait -- the loop check, a waiter list append and remove, and the
    ``clear()`` after it -- showed in a bot fleet's profile (benchmarks/client_transport.py:
    ``asyncio-future`` vs ``asyncio``). Loop thread only (other threads go through
    ``call_soon_threadsafe``, as before); a ``set()`` with no one parked is kept for the next
    :meth:`wait`, as Event's flag was.
    """

    __slots__ = ("_parked", "_pending")

    def __init__(self) -> None:
        self._pending = False
        self._parked: asyncio.Future[None] | None = None

    def set(self) -> None:
        parked = self._parked
        if parked is None:
            self._pending = True
        elif not parked.done():  # (done: already woken, or cancelled with its writer)
            parked.set_result(None)

    async def wait(self) -> None:
        """Until :meth:`set` was called since the last return (sets before the waiter runs
        again are one wake-up: its flush takes everything queued by then)."""
        if self._pending:
            self._pending = False
            return
        self._parked = asyncio.get_running_loop().create_future()
        try:
            await self._parked
        finally:
            self._parked = None


class _Redirect(AstranetError):
    """A redirecting MatchResult (A2) answered our request: repeat it at ``url``."""

    def __init__(self, url: str, match: MatchResult | None = None) -> None:
        super().__init__(f"redirected to {url}")
        self.url = url
        self.match = match


def _fetch_json(url: str) -> object:
    """GET ``url`` and parse JSON (runs in a thread; bounded by NODES_TIMEOUT_S)."""
    with urllib.request.urlopen(url, timeout=NODES_TIMEOUT_S) as response:
        return json.loads(response.read(MAX_NODES_BYTES))


def _close_of(exc: WsConnectionClosed) -> tuple[int, str]:
    if exc.rcvd is not None:
        return exc.rcvd.code, exc.rcvd.reason
    return 1006, "connection lost"
