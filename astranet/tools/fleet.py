"""A fleet of co-op bots: R rooms x 4 bots, spread over worker processes.

Why processes: one Python process cannot step hundreds of client worlds with prediction at
30 fps (the GIL; each world is a few hundred microseconds per frame), so rooms are dealt
round-robin to ``workers`` processes (``multiprocessing`` *spawn* context: each worker gets
fresh esper worlds and its own event loop). Inside a worker one asyncio loop runs every bot's
network tasks and a single frame task that steps every joined bot's world in turn, 30 times a
second (one clock per process, never a sleep per bot), its frames phase-locked to the bots'
input deadlines (astranet.client.pacing) so inputs reach the server just before its tick.

With ``lite`` the bots are :class:`~astranet.tools.litebot.LiteBot` s (the same protocol
traffic, no client-side simulation) so a small machine can load a server with more players.

Rooms come out exactly R x 4: per room the first bot sends FindOrCreate with ``party_size``
4 (the server holds the other three seats for 30 s), the other three JoinRoom that room id.

Phases (reported to the parent through one bounded queue):

1. **join** -- each worker joins its rooms, ``connect_concurrency`` rooms at a time, stepping
   the bots that already joined; a bot whose opening handshake timed out tries again with
   backoff until play starts (``BotReport.join_retries``); then reports ``ready``.
2. **play** -- when every worker is ready (or ``join_deadline()`` passed) the parent sets one
   ``go`` event; every worker plays ``duration_s`` from then, so the measurement window is
   the same for all bots. Workers report ``progress`` every second.
3. **done** -- Leave, and each worker sends its :class:`~astranet.tools.bot.BotReport` list.

Limits: ``MAX_QUEUE_MESSAGES`` queued messages; the parent stops waiting after
``duration_s + join_deadline() + SHUTDOWN_GRACE_S`` and terminates the workers it started.
Benchmark: ``astranet-loadtest`` (docs/loadtest.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import os
import queue as queue_module
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from typing import Any

from astranet.client import ClientOptions, ConnectFailed
from astranet.errors import AstranetError
from astranet.game import load_game
from astranet.net.backoff import Backoff
from astranet.tools.bot import Bot, BotReport, bot_kit_of
from astranet.tools.litebot import LiteBot

__all__ = [
    "BOTS_PER_ROOM",
    "MAX_QUEUE_MESSAGES",
    "FleetConfig",
    "FleetResult",
    "WorkerSummary",
    "run_fleet",
]

BOTS_PER_ROOM = 4  # the coop room capacity (WIRE rule 2)
MAX_QUEUE_MESSAGES = 1024  # workers x (1 progress/s): the parent drains it continuously
SHUTDOWN_GRACE_S = 30.0  # Leave + reports after the play phase; generous for a loaded box
PROGRESS_INTERVAL_S = 1.0
# Bots due within this of a wake-up are stepped in it: one wake serves a cluster of deadlines.
WAKE_COALESCE_S = 0.001
#: A join whose socket did not open is retried after 0.25 s, doubling up to 4 s (jittered).
JOIN_RETRY_INITIAL_S = 0.25
JOIN_RETRY_MAX_S = 4.0
#: The default --game: a spec string (the tools import no game; load_game does, at run time).
DEFAULT_GAME = "astranet.examples.coop:game"


@dataclass(frozen=True, slots=True)
class FleetConfig:
    url: str = "ws://127.0.0.1:8788"
    game: str = DEFAULT_GAME  # MODULE:ATTR; its package's bot_kit says how the bots play
    region: str = "us-east"
    game_mode: str = "coop"
    rooms: int = 1
    duration_s: float = 10.0
    workers: int = 0  # 0: one per core, at most one per room
    fps: float = 30.0  # frames per second each bot steps its world (one input per tick)
    seed: int = 0
    connect_concurrency: int = 4  # rooms joining at once per worker
    join_deadline_s: float | None = None  # play starts then even if workers still join;
    # None: 30 s + 0.5 s per room (an overloaded server accepts ~10 joins a second)
    lite: bool = False  # LiteBot (no prediction, no decoding) instead of the full Bot
    input_pacing: bool = True  # inputs timed to the server tick (ClientOptions.input_pacing)

    def join_deadline(self) -> float:
        if self.join_deadline_s is not None:
            return self.join_deadline_s
        return 30.0 + 0.5 * self.rooms

    def worker_count(self) -> int:
        wanted = self.workers or (os.cpu_count() or 1)
        return max(1, min(wanted, self.rooms))


@dataclass(frozen=True, slots=True)
class WorkerSummary:
    """What a worker process measured about itself (is the load generator the bottleneck?)."""

    worker: int
    bots: int
    cpu_s: float  # process CPU over its whole life
    frames: int
    late_frames: int  # frames that started over one frame period late
    frame_lag_ms_max: float
    error: str | None = None


@dataclass(slots=True)
class FleetResult:
    reports: list[BotReport] = field(default_factory=list)
    workers: list[WorkerSummary] = field(default_factory=list)
    play_started: float | None = None  # time.monotonic() of the go signal
    play_ended: float | None = None


# -- the worker process ----------------------------------------------------------------------


def _worker_main(
    index: int, config: FleetConfig, room_indices: list[int], messages: Any, go: Any
) -> None:
    """Entry point of a worker process (must be importable for the spawn context)."""
    with contextlib.suppress(KeyboardInterrupt):  # the parent was interrupted: it reports
        asyncio.run(_Worker(index, config, room_indices, messages, go).run())


class _Worker:
    def __init__(
        self, index: int, config: FleetConfig, room_indices: list[int], messages: Any, go: Any
    ) -> None:
        self.index = index
        self.config = config
        self.room_indices = room_indices
        self.messages = messages
        self.go = go
        self.game = load_game(config.game)
        self.kit = bot_kit_of(self.game)
        self.bots: list[Bot] = []  # every bot created (joined or not), for the reports
        self.playing: list[Bot] = []  # joined bots, stepped every frame
        self.frames = 0
        self.late_frames = 0
        self.lag_max_ms = 0.0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        frame_task = asyncio.create_task(self._frames())
        joining = asyncio.create_task(self._join_all())
        go = asyncio.ensure_future(loop.run_in_executor(None, self.go.wait))
        error: str | None = None
        try:
            # Play starts at the parent's go, even if this worker is still joining (an
            # overloaded server): the late joiners are cancelled at the end and reported.
            await asyncio.wait({joining, go}, return_when=asyncio.FIRST_COMPLETED)
            await go
            await asyncio.sleep(self.config.duration_s)  # the play phase's length
        finally:
            joining.cancel()
            try:
                await joining
            except asyncio.CancelledError:
                pass
            except AstranetError as exc:  # unexpected: the parent still gets the reports
                error = str(exc)
            self._stop.set()
            await frame_task
            await asyncio.gather(*(bot.close() for bot in self.bots), return_exceptions=True)
        for bot in self.bots:
            if not bot.joined and bot.error is None:
                bot.error = "still joining when the play phase ended"
        summary = WorkerSummary(
            self.index,
            len(self.bots),
            time.process_time(),
            self.frames,
            self.late_frames,
            self.lag_max_ms,
            error,
        )
        self._send("done", reports=[bot.report().to_dict() for bot in self.bots], summary=summary)

    async def _join_all(self) -> None:
        limit = asyncio.Semaphore(self.config.connect_concurrency)
        await asyncio.gather(*(self._join_room(room, limit) for room in self.room_indices))
        self._send("ready", joined=len(self.playing), bots=len(self.bots))

    async def _join_room(self, room_index: int, limit: asyncio.Semaphore) -> None:
        config = self.config
        options = ClientOptions(
            url=config.url,
            region=config.region,
            game_mode=config.game_mode,
            party_size=BOTS_PER_ROOM,
            seed=config.seed + room_index,
            input_pacing=config.input_pacing,
            schema=self.game.schema.fingerprint,  # a server of another game refuses at join
        )
        first = room_index * BOTS_PER_ROOM

        def make(seat: int, opts: ClientOptions) -> Bot:
            kind = LiteBot if config.lite else Bot
            seed = config.seed * 7919 + first + seat
            bot = kind(first + seat, room_index, opts, self.game, seed, self.kit)
            self.bots.append(bot)
            return bot

        async with limit:
            leader = make(0, options)
            room_id = await self._join(leader)
            followers = [
                make(
                    seat,
                    replace(options, party_size=1, room_id=room_id, party_token=leader.party_token),
                )
                for seat in range(1, BOTS_PER_ROOM)
            ]
            if room_id is None:
                for bot in followers:
                    bot.error = f"leader could not join: {leader.error}"
                return
            await asyncio.gather(*(self._join(bot) for bot in followers))

    async def _join(self, bot: Bot) -> str | None:
        # An opening handshake that timed out (a saturated server answers upgrades seconds
        # late) is what a player retries: so does the bot, backing off, until play starts.
        # Anything else (nothing listening, room full, schema mismatch, ...) is final.
        backoff = Backoff(JOIN_RETRY_INITIAL_S, JOIN_RETRY_MAX_S, rng=random.Random(bot.seed))
        while True:
            try:
                room_id = await bot.join()
            except ConnectFailed as exc:
                if not isinstance(exc.__cause__, TimeoutError) or self.go.is_set():
                    bot.error = f"{type(exc).__name__}: {exc}"
                    return None
                bot.join_retries += 1
                await asyncio.sleep(backoff.next_delay())
                continue
            except AstranetError as exc:  # RoomFull, ...: reported, not raised
                bot.error = f"{type(exc).__name__}: {exc}"
                return None
            self.playing.append(bot)
            return room_id

    async def _frames(self) -> None:
        """Step every joined bot once per frame period (frame pacing, not synchronisation).

        Each bot's frame is phase-locked to its own input deadline (GameClient's pacer,
        astranet.client.pacing): a heap orders the bots by their next wake-up (the earlier of
        the next frame and the next input deadline), and each wake steps only the bots due
        within WAKE_COALESCE_S, so an input is produced at its deadline rather than up to a frame
        later and a bot still steps about once a period. The cost per wake is the bots woken
        (log n each), not the fleet. (Waking every bot at the earliest deadline made each
        bot's pacer chase the others' leads upward.)
        """
        period = 1.0 / self.config.fps
        wakes: list[tuple[float, int, Bot]] = []  # (when, tie-break, bot): a heap
        scheduled: set[int] = set()
        order = itertools.count()
        planned = time.monotonic()
        next_progress = planned + PROGRESS_INTERVAL_S
        while not self._stop.is_set():
            now = time.monotonic()
            for bot in self.playing:  # bots that joined since the last wake start now
                if id(bot) not in scheduled:
                    scheduled.add(id(bot))
                    heapq.heappush(wakes, (now, next(order), bot))
            lag = now - planned
            if lag > period:
                self.late_frames += 1
                self.lag_max_ms = max(self.lag_max_ms, lag * 1000.0)
            stepped = False
            while wakes and wakes[0][0] <= now + WAKE_COALESCE_S:
                _, _, bot = heapq.heappop(wakes)
                bot.step()
                stepped = True
                when = now + period
                due = bot.client.next_input_due_ms()
                if due is not None and now + WAKE_COALESCE_S < due / 1000.0 < when:
                    when = due / 1000.0
                heapq.heappush(wakes, (when, next(order), bot))
            self.frames += stepped
            if now >= next_progress:
                next_progress = now + PROGRESS_INTERVAL_S
                self._progress()
            planned = wakes[0][0] if wakes else now + period
            await asyncio.sleep(max(0.0, planned - time.monotonic()))

    def _progress(self) -> None:
        self._send(
            "progress",
            joined=len(self.playing),
            snapshots=sum(bot.client.stats.snapshots for bot in self.playing),
            disconnects=sum(bot.disconnects for bot in self.bots),
            late_frames=self.late_frames,
            cpu_s=time.process_time(),
        )

    def _send(self, kind: str, **payload: Any) -> None:
        with contextlib.suppress(queue_module.Full):  # progress is best effort; done is tiny
            self.messages.put((kind, self.index, payload), timeout=5.0)


# -- the parent ------------------------------------------------------------------------------

ProgressCallback = Callable[[str, int, dict[str, Any]], None]


def run_fleet(config: FleetConfig, on_message: ProgressCallback | None = None) -> FleetResult:
    """Run the fleet to completion (blocking); ``on_message(kind, worker, payload)`` sees
    every ``ready``/``progress``/``done`` message, and ``("play", -1, {})`` at the go signal."""
    context = get_context("spawn")
    messages = context.Queue(MAX_QUEUE_MESSAGES)
    go = context.Event()
    count = config.worker_count()
    assignments = [list(range(config.rooms))[w::count] for w in range(count)]
    processes = [
        context.Process(
            target=_worker_main,
            args=(w, config, rooms, messages, go),
            name=f"astranet-bots-{w}",
            daemon=True,
        )
        for w, rooms in enumerate(assignments)
    ]
    # A Ctrl-C reaches the whole process group: the workers inherit SIGINT ignored (set
    # around start()), so only this process handles it and stops them, with no traceback from
    # a worker interrupted while it was still importing.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for process in processes:
            process.start()
    finally:
        signal.signal(signal.SIGINT, previous)
    result = FleetResult()
    ready: set[int] = set()
    done: set[int] = set()
    started = time.monotonic()
    interrupted = False
    deadline = started + config.join_deadline() + config.duration_s + SHUTDOWN_GRACE_S
    try:
        while len(done) < count and time.monotonic() < deadline:
            if not go.is_set() and (
                len(ready) == count or time.monotonic() - started > config.join_deadline()
            ):
                go.set()
                result.play_started = time.monotonic()
                if on_message is not None:
                    on_message("play", -1, {})
            try:
                kind, worker, payload = messages.get(timeout=0.25)
            except queue_module.Empty:
                _note_dead_workers(processes, done, result)
                continue
            if kind == "ready":
                ready.add(worker)
            elif kind == "done":
                done.add(worker)
                result.reports.extend(BotReport.from_dict(d) for d in payload["reports"])
                result.workers.append(payload["summary"])
                if result.play_ended is None:
                    result.play_ended = time.monotonic()
            if on_message is not None:
                on_message(kind, worker, payload)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        go.set()
        for process in processes:
            process.join(timeout=0.5 if interrupted else 5.0)
            if process.is_alive():  # ours, by handle: a worker stuck past every deadline
                process.terminate()
                process.join(timeout=5.0)
    result.reports.sort(key=lambda report: report.bot)
    return result


def _note_dead_workers(processes: list[Any], done: set[int], result: FleetResult) -> None:
    """A worker that died without reporting (crash, OOM) counts as done with an error."""
    for index, process in enumerate(processes):
        if index not in done and not process.is_alive() and process.exitcode not in (None, 0):
            done.add(index)
            result.workers.append(
                WorkerSummary(index, 0, 0.0, 0, 0, 0.0, f"worker exited with {process.exitcode}")
            )
