"""Room failover (WIRE.md A3): a Resume that reaches a live node restores a dead node's room.

:class:`FailoverMatchmaking` wraps the cluster's matchmaking backend (every call is passed
through) and changes one thing, ``route_resume``: for a room this node does not host it asks
:class:`~astranet.cluster.ownership.RoomOwnership` to ``claim`` it --

* ``claimed`` (the owner is dead): the room is restored here from its last checkpoint in the
  shared Redis store (``StoragePersistence.restore_room``: held seats for its players, numbering
  above the checkpoint's reserved block), and the Resume is served here (``JoinAccepted``);
* ``elsewhere`` (a live node owns it, maybe one that restored it a moment ago): a redirect
  ``MatchResult{room_id, url}`` to that node;
* ``unknown`` (not in the store): the wrapped backend decides (``room_lost``/``resume_denied``).

Claims of one room on this node are single-flight: players of a room resuming here at once
wait for the same restore. Across nodes the claim script picks exactly one restorer.

The other direction: ``RoomOwnership.watch`` runs the epoch heartbeat; rooms another node took
over (this node was paused, SIGSTOP, or cut off) are evicted -- their sessions closed
``1012`` with :data:`ROOM_MOVED_REASON` (a resumable close: the library client resumes and is
redirected to the new owner), the room dropped *without writing anything* (its writes would be
refused by the fence anyway).

Limits: a room is restorable only from the shared store (``--store redis``); what happened
after its last checkpoint is lost (at most ``--checkpoint-interval``).
Benchmark: benchmarks/failover.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from astranet.cluster.directory import RoomDirectory
from astranet.cluster.leases import HostedRoom, NodeLease
from astranet.cluster.ownership import RoomOwnership
from astranet.cluster.timings import ClusterTimings
from astranet.errors import MatchmakingError, RoomLost
from astranet.server.config import ServerConfig
from astranet.server.matchmaking import InProcessMatchmaking, Match, MatchmakingBackend
from astranet.server.persistence import StoragePersistence
from astranet.storage.redis import Fence, RedisStorage

__all__ = [
    "ROOM_MOVED_CLOSE_CODE",
    "ROOM_MOVED_REASON",
    "FailoverMatchmaking",
    "FailoverNode",
    "cluster_timings",
    "default_node_id",
    "open_failover_node",
]

log = logging.getLogger(__name__)

#: Close code and reason for the sessions of a room this node lost (documented in
#: docs/protocol.md). 1012 "service restart" is resumable for every client (WIRE rule 7).
ROOM_MOVED_CLOSE_CODE = 1012
ROOM_MOVED_REASON = "room moved to another node"


class FailoverMatchmaking:
    """A :class:`MatchmakingBackend` that restores dead nodes' rooms on Resume."""

    def __init__(
        self,
        inner: MatchmakingBackend,
        persistence: StoragePersistence,
        host: Any,
        *,
        ownership: RoomOwnership | None = None,
        config: ServerConfig | None = None,
        fence: Fence | None = None,
        check_interval_s: float = 1.0,
        own_lease: bool = True,
    ) -> None:
        """``host`` is the room host (``rooms``, ``matchmaker``, ``tick``...: what
        ``restore_room`` needs); ``check_interval_s`` is the epoch heartbeat period.

        Without ``ownership``, :meth:`start` connects from ``config`` and ``fence`` (a
        directory handle and the ownership watch) and, with ``own_lease``, keeps this node's
        lease itself (when ``inner`` is not a cluster backend that already does).
        """
        self.inner = inner
        self.ownership = ownership  # type: ignore[assignment]
        self.persistence = persistence
        self.host = host
        self.config = config
        self.fence = fence
        self.check_interval_s = check_interval_s
        self.directory: RoomDirectory | None = None
        self.lease: NodeLease | None = None
        self.own_lease = own_lease
        self.restored = 0  # rooms restored here
        self.evicted = 0  # rooms this node lost to another
        self._restoring: dict[str, asyncio.Future[Match | None]] = {}

    # -- the one changed request -------------------------------------------------------------

    async def route_resume(self, room_id: str) -> Match | None:
        if room_id in self.host.rooms:
            return None
        # Single-flight from the first await on: players of one room resuming here at once
        # share one claim and one restore (a second claim by this node would bump the epoch
        # and build the room twice).
        task = self._restoring.get(room_id)
        if task is None:
            task = asyncio.ensure_future(self._claim_and_restore(room_id))
            self._restoring[room_id] = task
            task.add_done_callback(lambda _: self._restoring.pop(room_id, None))
        return await asyncio.shield(task)

    async def _claim_and_restore(self, room_id: str) -> Match | None:
        claim = await self.ownership.claim(room_id)
        if claim.kind == "elsewhere":
            return Match(room_id, "", "", url=claim.url)
        if claim.kind == "unknown":
            return await self.inner.route_resume(room_id)
        try:
            room = await self.persistence.restore_room(self.host, room_id)
        except BaseException:
            self.ownership.release(room_id)
            raise
        if room is None:
            self.ownership.release(room_id)
            raise RoomLost(f"room {room_id} has no checkpoint to restore it from")
        self.restored += 1
        if self.directory is not None:  # point the cluster at us now, not at the next beat
            await self.directory.register_room(
                room_id, room.region, room.game_mode, len(room.players), tick=room.tick
            )
        return None

    # -- eviction ------------------------------------------------------------------------------

    def evict(self, room_ids: list[str]) -> None:
        """Drop rooms another node owns now: close their sessions, write nothing."""
        for room_id in room_ids:
            room = self.host.rooms.pop(room_id, None)
            if room is None:
                continue
            self.host.report_room_counts(room)  # its last counts still reach /metrics
            log.error(
                "room %s was taken over by another node; closing its %d session(s)",
                room_id,
                sum(1 for p in room.players.values() if p.session is not None),
            )
            for player in room.players.values():
                session = player.session
                if session is not None and hasattr(session, "close"):
                    session.close(ROOM_MOVED_CLOSE_CODE, ROOM_MOVED_REASON)
                    session.player = None
                player.session = None
            with contextlib.suppress(MatchmakingError):  # no seat book entry: nothing to free
                self.host.matchmaker.close_room(room_id)
            room.close()
            self.evicted += 1

    # -- everything else: the wrapped backend --------------------------------------------------

    async def find_or_create(self, region: str, game_mode: str, party_size: int) -> Match:
        return await self.inner.find_or_create(region, game_mode, party_size)

    async def join_room(
        self, room_id: str, seat_token: bytes | None, party_token: bytes | None
    ) -> Match:
        return await self.inner.join_room(room_id, seat_token, party_token)

    def seats_released(self, room_id: str, seats: int) -> None:
        self.inner.seats_released(room_id, seats)

    def room_closed(self, room_id: str) -> None:
        # The fence keeps the room until the store has written its close (RedisStorage drops
        # it then, in order on the writer thread): released here, the close would be refused.
        self.inner.room_closed(room_id)

    def has_holds(self, room_id: str) -> bool:
        return self.inner.has_holds(room_id)

    def rooms_json(self, tick: int) -> list[dict[str, object]]:
        return self.inner.rooms_json(tick)

    def view_version(self) -> object:
        return self.inner.view_version()

    def install(self, server: Any) -> None:
        self.inner.install(server)

    async def start(self, server: Any) -> None:
        await self.inner.start(server)
        if self.ownership is None:
            await self._join_cluster(server)
        self.ownership.watch(self.check_interval_s, self.evict)

    async def stop(self) -> None:
        if self.ownership is not None:
            await self.ownership.stop()
        if self.lease is not None:
            await self.lease.stop()  # retire: this node's rooms leave the directory at once
        if self.directory is not None:
            await self.directory.close()
        await self.inner.stop()

    async def _join_cluster(self, server: Any) -> None:
        config, fence = self.config, self.fence
        assert config is not None and config.redis is not None and fence is not None
        scheme = "wss" if config.tls_enabled else "ws"
        url = config.public_url or f"{scheme}://{config.host}:{server.ws_port}"
        timings = cluster_timings(config.node_lease)
        self.directory = await RoomDirectory.connect(
            config.redis, fence.node_id, url, config.regions, timings=timings
        )
        self.ownership = RoomOwnership(self.directory.client, fence, redis_url=config.redis)
        self.check_interval_s = timings.heartbeat_s
        if not self.own_lease:
            return
        host = self.host
        self.lease = NodeLease(
            self.directory,
            lambda: [
                HostedRoom(r.room_id, r.region, r.game_mode, len(r.players))
                for r in list(host.rooms.values())
            ],
            lambda: int(host.tick),
        )
        await self.lease.start()
        log.info("node %s joined the cluster at %s as %s", fence.node_id, config.redis, url)

    def __getattr__(self, name: str) -> Any:
        # Extras of the wrapped backend (metrics counters, its directory) stay reachable.
        return getattr(self.inner, name)


def cluster_timings(lease_s: float) -> ClusterTimings:
    """Lease arithmetic for ``--node-lease``: five heartbeats per lease (as the defaults)."""
    beat = lease_s / 5
    return ClusterTimings(
        heartbeat_s=beat, lease_s=lease_s, reap_s=beat, room_ttl_s=lease_s * 1.5
    ).validate()


def default_node_id() -> str:
    """Unique per process: host, pid and 4 random hex digits (a restart is a new node)."""
    host = "".join(ch for ch in socket.gethostname() if ch.isalnum())[:12] or "node"
    return f"{host}-{os.getpid()}-{secrets.token_hex(2)}"


@dataclass(frozen=True, slots=True)
class FailoverNode:
    """What ``astranet-server`` needs for a cluster node with a Redis store."""

    node_id: str
    persistence: StoragePersistence
    backend: Callable[[Any], FailoverMatchmaking]


async def open_failover_node(
    config: ServerConfig, inner: Callable[[Any], MatchmakingBackend] | None = None
) -> FailoverNode:
    """Open the shared Redis store (StorageError naming the URL if unreachable) and build the
    backend factory ``GameServer(backend=...)`` takes.

    ``inner`` builds the matchmaking backend to wrap from the room host: the cluster's Redis
    matchmaking (which keeps the node's lease itself), or by default the in-process one (this
    module then keeps the lease).
    """
    assert config.redis is not None
    node_id = config.node_id or default_node_id()
    fence = Fence(node_id)
    url = config.redis
    persistence = await StoragePersistence.open(
        lambda: RedisStorage(url, fence=fence),
        checkpoint_interval=config.checkpoint_interval,
        location=url,
        restore_on_start=False,  # shared store: rooms are restored on demand (route_resume)
    )

    def backend(host: Any) -> FailoverMatchmaking:
        wrapped = inner(host) if inner is not None else InProcessMatchmaking(host.matchmaker)
        return FailoverMatchmaking(
            wrapped, persistence, host, config=config, fence=fence, own_lease=inner is None
        )

    return FailoverNode(node_id, persistence, backend)
