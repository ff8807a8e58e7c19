"""RedisMatchmaking: the lobby's matchmaking backend in cluster mode (WIRE.md A2).

Decisions are the directory's (:class:`~astranet.cluster.directory.RoomDirectory`, atomic
across nodes); this node's own seat book stays the room host's local
:class:`~astranet.server.matchmaking.Matchmaker` (players, resume windows), kept in step:

* a placement on this node takes the seat in the local book too, building the room's entry
  there the first time (the directory claimed it before any node built it);
* a placement elsewhere becomes a redirect ``Match(url, seat_token)``;
* the room host's notifications (seats released, room closed) go to Redis through one ordered
  writer task, never awaited on the tick loop. If one fails (Redis away), every hosted room is
  written again in full once Redis answers (the same path as a restarted Redis).

Redis away: rooms keep ticking (nothing on the tick path awaits Redis); new requests get
``ProtocolError{code:"unavailable"}`` (:class:`~astranet.errors.ClusterUnavailable`);
``/rooms`` falls back to this node's own rooms. Views (``/rooms``, ``/nodes``) are read from
Redis once per ``VIEW_REFRESH_S`` by one task and served from that copy, so HTTP never waits
on Redis. Metrics: ``astranet_cluster_redis_roundtrip_seconds``, ``..._redirects_total``,
``..._reaped_nodes_total``, ``..._directory_up``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

from astranet.cluster.directory import Placement, RoomDirectory
from astranet.cluster.leases import HostedRoom, NodeLease
from astranet.cluster.timings import ClusterTimings
from astranet.errors import ClusterUnavailable, MatchmakingError, RoomLost
from astranet.server.matchmaking import Match

if TYPE_CHECKING:
    from astranet.server.app import GameServer
    from astranet.server.roomhost import RoomHost

__all__ = ["RedisMatchmaking", "default_node_id", "redis_backend"]

log = logging.getLogger(__name__)

VIEW_REFRESH_S = 1.0  # /rooms and /nodes are at most this stale (plus one round trip)
MAX_PENDING_WRITES = 10_000  # mirror writes queued while Redis is slow; beyond: full resync
ROUNDTRIP_BUCKETS_S = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def default_node_id() -> str:
    """Unique per process: ``HOST-PID-RANDOM`` (readable in logs and /nodes)."""
    host = socket.gethostname().split(".")[0][:24] or "node"
    return f"{host}-{os.getpid()}-{secrets.token_hex(2)}"


class _ClusterMetrics:
    def __init__(self, registry: Any) -> None:
        ns, sub = "astranet", "cluster"
        self.roundtrip = Histogram(
            "redis_roundtrip_seconds",
            "Round trip of one Redis call of the room directory",
            namespace=ns,
            subsystem=sub,
            registry=registry,
            buckets=ROUNDTRIP_BUCKETS_S,
        )
        where = {"namespace": ns, "subsystem": sub, "registry": registry}
        self.redirects = Counter(
            "redirects", "Requests answered with a redirect to another node", **where
        )
        self.reaped = Counter(
            "reaped_nodes", "Dead nodes this node removed from the directory", **where
        )
        self.up = Gauge("directory_up", "1 while Redis answers, else 0", **where)


class RedisMatchmaking:
    """MatchmakingBackend for cluster mode. Build with :func:`redis_backend`."""

    def __init__(
        self,
        host: RoomHost,
        redis_url: str,
        *,
        node_id: str | None = None,
        public_url: str | None = None,
        namespace: str = "astranet",
        timings: ClusterTimings | None = None,
    ) -> None:
        self.host = host
        self.redis_url = redis_url
        self.node_id = node_id or default_node_id()
        self.public_url = public_url
        self.namespace = namespace
        self.timings = (timings or ClusterTimings()).validate()
        self.directory: RoomDirectory | None = None
        self.lease: NodeLease | None = None
        self.metrics: _ClusterMetrics | None = None
        self._rooms_view: list[dict[str, object]] | None = None
        self._nodes_view: list[dict[str, object]] = []
        self._view_generation = 0
        self._writes: deque[tuple[str, str, int]] = deque()
        self._write_wake = asyncio.Event()
        self._resync = False
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle (GameServer) ------------------------------------------------------------

    def install(self, server: GameServer) -> None:
        self.metrics = _ClusterMetrics(server.metrics.registry)
        server.http.add_json_route(
            "/nodes", lambda: self._nodes_view, version=lambda: self._view_generation
        )

    async def start(self, server: GameServer) -> None:
        """Connect (ClusterUnavailable naming the URL if Redis does not answer), register this
        node and its rooms, then keep the lease, the mirror writer and the views going."""
        url = self.public_url or f"ws://{server.config.host}:{server.ws_port}"
        self.public_url = url
        metrics = self.metrics
        self.directory = await RoomDirectory.connect(
            self.redis_url,
            self.node_id,
            url,
            server.config.regions,
            namespace=self.namespace,
            timings=self.timings,
            capacity=self.host.matchmaker.capacity,
            on_roundtrip=metrics.roundtrip.observe if metrics is not None else None,
        )
        self.lease = NodeLease(
            self.directory, self._hosted, lambda: self.host.tick, on_reaped=self._count_reaped
        )
        try:
            await self.lease.start()
        except ClusterUnavailable:
            await self.directory.close()
            raise
        if metrics is not None:
            metrics.up.set(1)
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="astranet-cluster-writer"),
            asyncio.create_task(self._view_loop(), name="astranet-cluster-views"),
        ]
        await self._refresh_views()
        log.info("cluster node %s at %s (redis %s)", self.node_id, url, self.redis_url)

    async def stop(self) -> None:
        """Leave the cluster: this node's rooms leave the directory at once (A2)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.lease is not None:
            await self.lease.stop(retire=True)
        if self.directory is not None:
            await self.directory.close()

    # -- requests (the lobby) --------------------------------------------------------------

    async def find_or_create(self, region: str, game_mode: str, party_size: int) -> Match:
        self.host.matchmaker.check_request(region, game_mode, party_size, cluster=True)
        placement = await self._directory().find_or_create(region, game_mode, party_size)
        return self._match(placement)

    async def join_room(
        self, room_id: str, seat_token: bytes | None, party_token: bytes | None
    ) -> Match:
        directory = self._directory()
        if seat_token is not None:
            placement = await directory.claim_seat(room_id, seat_token)
        else:
            placement = await directory.join_room(room_id, party_token)
        return self._match(placement)

    async def route_resume(self, room_id: str) -> Match | None:
        if room_id in self.host.rooms:
            return None
        location = await self._directory().locate(room_id)
        if location is None or not location.alive:
            raise RoomLost("room lost: the node that ran it is gone")
        if location.node == self.node_id:
            return None  # ours but not running here (yet): the room host answers
        return self._redirect(Match(room_id, "", "", url=location.url))

    # -- notifications (the room host, on the tick loop: never await) ----------------------

    def seats_released(self, room_id: str, seats: int) -> None:
        self._queue("release", room_id, seats)

    def room_closed(self, room_id: str) -> None:
        self._queue("close", room_id, 0)

    def has_holds(self, room_id: str) -> bool:
        return self.lease is not None and room_id in self.lease.held_rooms

    # -- views -----------------------------------------------------------------------------

    def rooms_json(self, tick: int) -> list[dict[str, object]]:
        if self._rooms_view is not None and self.available:
            return self._rooms_view
        return [  # Redis away: what this node knows, its own rooms
            {**info.as_json(tick), "node": self.node_id, "url": self.public_url}
            for info in self.host.matchmaker.rooms()
        ]

    def view_version(self) -> object:
        return self._view_generation

    @property
    def available(self) -> bool:
        return self.lease is not None and self.lease.available

    # -- internals -------------------------------------------------------------------------

    def _directory(self) -> RoomDirectory:
        if self.directory is None or not self.available:
            raise ClusterUnavailable(
                f"matchmaking unavailable: the cluster directory (Redis at {self.redis_url})"
                " cannot be reached; try again shortly"
            )
        return self.directory

    def _match(self, placement: Placement) -> Match:
        if not placement.local:
            return self._redirect(
                Match(
                    placement.room_id,
                    placement.region,
                    placement.game_mode,
                    url=placement.url,
                    seat_token=placement.seat_token,
                    party_token=placement.party_token,
                )
            )
        matchmaker = self.host.matchmaker
        room_id = placement.room_id
        if not matchmaker.has_room(room_id):
            # Claimed for this node in the directory; built here on its first player.
            matchmaker.restore_room(room_id, placement.region, placement.game_mode, 0)
        try:
            matchmaker.join_room(room_id)  # the directory already counted the seat
        except MatchmakingError:
            self.seats_released(room_id, 1)
            raise
        return Match(
            room_id,
            placement.region,
            placement.game_mode,
            created=room_id not in self.host.rooms,
            party_token=placement.party_token,
        )

    def _redirect(self, match: Match) -> Match:
        if self.metrics is not None:
            self.metrics.redirects.inc()
        return match

    def _hosted(self) -> list[HostedRoom]:
        return [
            HostedRoom(info.room_id, info.region, info.game_mode, info.players)
            for info in self.host.matchmaker.rooms()
            if info.room_id in self.host.rooms
        ]

    def _count_reaped(self, nodes: list[str]) -> None:
        if self.metrics is not None:
            self.metrics.reaped.inc(len(nodes))

    def _queue(self, op: str, room_id: str, seats: int) -> None:
        if len(self._writes) >= MAX_PENDING_WRITES:
            self._writes.clear()
            self._resync = True  # too far behind: rewrite every room instead
        self._writes.append((op, room_id, seats))
        self._write_wake.set()

    async def _write_loop(self) -> None:
        while True:
            await self._write_wake.wait()
            self._write_wake.clear()
            directory = self.directory
            assert directory is not None
            while self._writes:
                op, room_id, seats = self._writes[0]
                try:
                    if op == "release":
                        await directory.release(room_id, seats)
                    else:
                        await directory.close_room(room_id)
                except ClusterUnavailable as exc:
                    log.warning("directory write %s %s lost: %s", op, room_id, exc)
                    self._writes.clear()
                    self._resync = True
                    break
                self._writes.popleft()

    async def _view_loop(self) -> None:
        while True:
            await asyncio.sleep(VIEW_REFRESH_S)
            await self._refresh_views()

    async def _refresh_views(self) -> None:
        directory, lease = self.directory, self.lease
        if directory is None or lease is None:
            return
        try:
            if self._resync and lease.available:
                await self._rewrite_all(directory)
            rooms, nodes = await directory.rooms(), await directory.nodes()
        except ClusterUnavailable:
            if self.metrics is not None:
                self.metrics.up.set(0)
            self._view_generation += 1
            return
        if self.metrics is not None:
            self.metrics.up.set(1 if lease.available else 0)
        if rooms != self._rooms_view or nodes != self._nodes_view:
            self._rooms_view, self._nodes_view = rooms, nodes
            self._view_generation += 1

    async def _rewrite_all(self, directory: RoomDirectory) -> None:
        """After lost writes: every hosted room written again with its current seat count."""
        self._resync = False
        for room in self._hosted():
            await directory.register_room(
                room.room_id, room.region, room.game_mode, room.players, tick=self.host.tick
            )
        log.info("directory resynchronised: %d room(s) rewritten", len(self._hosted()))


def redis_backend(
    redis_url: str,
    *,
    node_id: str | None = None,
    public_url: str | None = None,
    namespace: str = "astranet",
    timings: ClusterTimings | None = None,
) -> Callable[[RoomHost], RedisMatchmaking]:
    """``GameServer(..., backend=redis_backend(url))``: cluster mode on that Redis."""

    def build(host: RoomHost) -> RedisMatchmaking:
        return RedisMatchmaking(
            host,
            redis_url,
            node_id=node_id,
            public_url=public_url,
            namespace=namespace,
            timings=timings,
        )

    return build
