"""Node leases: keep this node alive in the directory, re-register after trouble, reap the dead.

One asyncio task per node (never per room): every ``heartbeat_s`` it runs one ``HEARTBEAT``
script that renews the node's lease and the TTL of every room it hosts; rooms the directory
lost (Redis restarted, or our lease lapsed during a long pause) come back in the reply and are
registered again with their current player counts. Every ``reap_s`` it also runs ``REAP``,
which forgets nodes whose lease lapsed; the script is atomic, so when every node reaps at
once each dead node is still reaped exactly once (and counted once, by the node that did it).

Redis trouble never stops the loop: the node marks itself ``available = False`` (matchmaking
then answers ``unavailable``), keeps its rooms ticking, and tries again next period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from astranet.cluster.directory import HeartbeatReply, RoomDirectory
from astranet.errors import ClusterUnavailable

__all__ = ["HostedRoom", "NodeLease"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HostedRoom:
    """What the directory needs to (re-)register one room this node hosts."""

    room_id: str
    region: str
    game_mode: str
    players: int


class NodeLease:
    """The heartbeat/reaper task of one node. ``await start()``, later ``await stop()``.

    ``hosted()`` lists the rooms this node hosts right now; ``tick()`` the server tick.
    ``on_reaped(node_ids)`` is told which dead nodes this node reaped.
    """

    def __init__(
        self,
        directory: RoomDirectory,
        hosted: Callable[[], Sequence[HostedRoom]],
        tick: Callable[[], int],
        *,
        on_reaped: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.directory = directory
        self._hosted = hosted
        self._tick = tick
        self._on_reaped = on_reaped
        #: False while Redis cannot be reached (matchmaking then refuses with `unavailable`).
        self.available = True
        #: Hosted rooms with live party or seat holds at the last heartbeat.
        self.held_rooms: frozenset[str] = frozenset()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """First heartbeat (raises ClusterUnavailable if Redis is down), then the loop."""
        await self.beat_once()
        self._task = asyncio.create_task(self._run(), name=f"astranet-lease-{self.node_id}")

    @property
    def node_id(self) -> str:
        return self.directory.node_id

    async def stop(self, *, retire: bool = True) -> None:
        """End the loop; with ``retire`` remove this node and its rooms from the directory."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if retire:
            try:
                await self.directory.retire()
            except ClusterUnavailable as exc:
                log.warning("could not retire node %s: %s", self.node_id, exc)

    async def beat_once(self) -> HeartbeatReply:
        """One heartbeat, plus registering whatever rooms the directory lost."""
        rooms = {room.room_id: room for room in self._hosted()}
        players = sum(room.players for room in rooms.values())
        tick = self._tick()
        reply = await self.directory.heartbeat(players, tick, list(rooms))
        for room_id in reply.missing:
            room = rooms[room_id]
            await self.directory.register_room(
                room.room_id, room.region, room.game_mode, room.players, tick=tick
            )
        if reply.missing:
            log.info("registered %d room(s) the directory had lost", len(reply.missing))
        self.held_rooms = reply.held
        return reply

    async def reap_once(self) -> list[str]:
        reaped = await self.directory.reap()
        if reaped:
            log.warning("reaped dead node(s): %s", ", ".join(reaped))
            if self._on_reaped is not None:
                self._on_reaped(reaped)
        return reaped

    async def _run(self) -> None:
        timings = self.directory.timings
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + timings.heartbeat_s
        next_reap = loop.time()
        while not self._stopping.is_set():
            await asyncio.sleep(max(0.0, min(next_beat, next_reap) - loop.time()))
            now = loop.time()
            try:
                if now >= next_beat:
                    next_beat = now + timings.heartbeat_s
                    await self.beat_once()
                if now >= next_reap:
                    next_reap = now + timings.reap_s
                    await self.reap_once()
            except ClusterUnavailable as exc:
                if self.available:
                    log.warning("cluster directory unreachable; rooms keep running: %s", exc)
                self.available = False
                next_beat = min(next_beat, now + timings.heartbeat_s / 2)  # retry soon
                continue
            if not self.available:
                log.info("cluster directory reachable again; node %s re-registered", self.node_id)
                self.available = True
