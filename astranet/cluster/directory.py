"""The cluster-wide room directory on Redis: seats, placement, redirects (WIRE.md A2).

Operations (each one Lua script, so atomic across every node; see ``scripts.py``):

* ``find_or_create(region, mode, party_size)`` -> :class:`Placement`: the fullest live room
  that fits the party, else a new room *claimed* in the directory on the live node of that
  region with the fewest players (ties: the node asked). The claim comes before any room is
  built, and the request carries an id, so a node that retries after a timeout gets the same
  answer back: a slow node never makes a twin (Colyseus #978). On the node asked, the seat
  is a player at once; on another node it is held 15 s behind a single-use ``seat_token``.
* ``join_room(room_id)`` (JoinRoom without a token; a held party seat first, else a free one),
  ``claim_seat(room_id, token)`` (JoinRoom with a token), ``locate(room_id)`` (Resume routing).
* The owner's bookkeeping: ``register_room``, ``release``, ``close_room``, ``heartbeat``
  (renews the lease and the rooms' TTLs, see ``leases.py``), ``retire`` (clean shutdown),
  ``reap`` (forget dead nodes; safe when several nodes reap at once).
* Views: ``rooms()`` (``GET /rooms`` cluster-wide), ``nodes()`` (``GET /nodes``).

Every room entry expires unless its node refreshes it (no stale rows: Colyseus #850/#389),
and every view and placement ignores nodes whose lease lapsed, so a dead node's rooms vanish
from matchmaking the moment the node is declared dead, before any reaper runs.

Errors: Redis trouble of any kind (refused, timed out, reset) raises
:class:`~astranet.errors.ClusterUnavailable` (wire code ``unavailable``); refusals raise the
matching :class:`~astranet.errors.MatchmakingError`. Keys: ``docs/cluster.md``.
Benchmark: ``benchmarks/cluster.py`` (join latency with and without a redirect).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from astranet.cluster import scripts
from astranet.cluster.timings import ClusterTimings
from astranet.errors import (
    ClusterUnavailable,
    MatchmakingError,
    RoomFull,
    RoomNotFound,
    SeatExpired,
    UnknownRegion,
)
from astranet.server.matchmaking import DEFAULT_CAPACITY, new_room_id

__all__ = [
    "DEFAULT_NAMESPACE",
    "SEAT_TOKEN_BYTES",
    "HeartbeatReply",
    "Placement",
    "RoomDirectory",
    "RoomLocation",
]

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "astranet"
SEAT_TOKEN_BYTES = 16  # 128 random bits: unguessable for its 15 s life
PARTY_TOKEN_BYTES = 16  # as the in-process matchmaker's party tokens (A4)
# A find_or_create answer is kept this long under its request id for retries.
REQUEST_RESULT_TTL_MS = 60_000
# Attempts when a fresh room id collides with a live one (~1e-10 each).
MAX_ROOM_ID_ATTEMPTS = 4

_REFUSALS: dict[str, type[MatchmakingError]] = {
    "room_not_found": RoomNotFound,
    "room_full": RoomFull,
    "seat_expired": SeatExpired,
    "unknown_region": UnknownRegion,
}
_MESSAGES = {
    "room_not_found": "room ID does not exist",
    "room_full": "room is full",
    "seat_expired": "seat token is wrong, used or expired",
    "unknown_region": "no live node serves region",
}


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a request landed.

    ``local``: the seat is already a player's on the node asked (seat them here);
    otherwise the client must go to ``url`` with ``seat_token`` (None for a bare redirect).
    ``created``: the directory entry is new (the owner builds the room on its first player).
    """

    room_id: str
    node: str
    url: str
    local: bool
    seat_token: bytes | None = None
    created: bool = False
    region: str = ""
    game_mode: str = ""
    #: A4: opens the party's held seats (find_or_create with party_size > 1).
    party_token: bytes | None = None


@dataclass(frozen=True, slots=True)
class RoomLocation:
    """Who owns a room: ``alive`` is False once the owner's lease lapsed."""

    room_id: str
    node: str
    url: str
    alive: bool


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    """``fresh``: our lease had lapsed (or Redis restarted) and was just renewed.
    ``missing``: hosted rooms the directory lost (register them again).
    ``held``: hosted rooms with live party/seat holds (do not close them as empty)."""

    fresh: bool
    missing: tuple[str, ...]
    held: frozenset[str]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RoomDirectory:
    """One node's handle on the cluster directory. Async; one instance per node.

    ``on_roundtrip(seconds)`` is called after every Redis call (the ``/metrics`` latency).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        node_id: str,
        url: str,
        regions: Sequence[str],
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timings: ClusterTimings | None = None,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.time,
        room_id_factory: Callable[[], str] = new_room_id,
        on_roundtrip: Callable[[float], None] | None = None,
        redis_url: str = "redis",
    ) -> None:
        self.client = client
        self.node_id = node_id
        self.url = url
        self.regions: tuple[str, ...] = tuple(regions)
        self.namespace = namespace
        self.timings = timings if timings is not None else ClusterTimings()
        self.capacity = capacity
        self.redis_url = redis_url
        self._clock = clock
        self._new_room_id = room_id_factory
        self._on_roundtrip = on_roundtrip
        self._scripts = {
            name: client.register_script(getattr(scripts, name))
            for name in scripts.__all__  # registered once; EVALSHA with EVAL fallback
        }

    @classmethod
    async def connect(
        cls, redis_url: str, node_id: str, url: str, regions: Sequence[str], **kwargs: Any
    ) -> RoomDirectory:
        """Connect to ``redis_url`` and check it answers; ClusterUnavailable names the URL."""
        timings: ClusterTimings = kwargs.get("timings") or ClusterTimings()
        client = aioredis.Redis.from_url(
            redis_url,
            decode_responses=True,
            socket_timeout=timings.redis_timeout_s,
            socket_connect_timeout=timings.redis_timeout_s,
        )
        directory = cls(client, node_id, url, regions, redis_url=redis_url, **kwargs)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise ClusterUnavailable(f"cannot reach Redis at {redis_url}: {exc}") from exc
        return directory

    async def close(self) -> None:
        await self.client.aclose()

    # -- requests from clients -------------------------------------------------------------

    async def find_or_create(
        self, region: str, game_mode: str, party_size: int, *, request_id: str | None = None
    ) -> Placement:
        """FindOrCreate across the cluster. Pass the same ``request_id`` to retry safely."""
        request_id = request_id or secrets.token_hex(8)
        token = secrets.token_hex(SEAT_TOKEN_BYTES)
        party_token = secrets.token_hex(PARTY_TOKEN_BYTES) if party_size > 1 else ""
        t = self.timings
        for _ in range(MAX_ROOM_ID_ATTEMPTS):
            reply = await self._run(
                "FIND_OR_CREATE",
                region,
                game_mode,
                party_size,
                self.capacity,
                self._now_ms(),
                round(t.hold_s * 1000),
                round(t.seat_s * 1000),
                self.node_id,
                self._new_room_id(),
                request_id,
                token,
                REQUEST_RESULT_TTL_MS,
                round(t.room_ttl_s * 1000),
                party_token,
            )
            if reply[0] != "retry":
                if reply[0] == "unknown_region":
                    raise UnknownRegion(f"unknown region {region[:64]!r}: no live node serves it")
                placement = self._placement(reply)
                if party_token:
                    return dataclasses.replace(placement, party_token=bytes.fromhex(party_token))
                return placement
        raise ClusterUnavailable("could not pick a free room id")  # pragma: no cover

    async def join_room(self, room_id: str, party_token: bytes | None = None) -> Placement:
        """JoinRoom without a seat token: a local player seat, or a redirect with a held seat.
        With the party's token (A4) it takes one of the party's held seats."""
        reply = await self._run(
            "JOIN_ROOM",
            room_id,
            self._now_ms(),
            self.node_id,
            round(self.timings.seat_s * 1000),
            secrets.token_hex(SEAT_TOKEN_BYTES),
            party_token.hex() if party_token else "",
        )
        return self._placement(reply)

    async def claim_seat(self, room_id: str, seat_token: bytes) -> Placement:
        """JoinRoom with a token: spend it here (the owner), else redirect with it unspent."""
        reply = await self._run("CLAIM_SEAT", room_id, seat_token.hex(), self.node_id)
        return self._placement(reply)

    async def locate(self, room_id: str) -> RoomLocation | None:
        """The owner of ``room_id`` (None if the directory has no such room)."""
        node, url = await self._call(self.client.hmget(self._key("room", room_id), "node", "url"))
        if node is None:
            return None
        alive = bool(await self._call(self.client.exists(self._key("node", node))))
        return RoomLocation(room_id, node, url, alive)

    # -- the owner's bookkeeping -----------------------------------------------------------

    async def register_room(
        self, room_id: str, region: str, game_mode: str, players: int, *, tick: int = 0
    ) -> bool:
        """Write a hosted room (new, or lost by Redis). False if another live node owns it."""
        reply = await self._run(
            "REGISTER_ROOM",
            room_id,
            self.node_id,
            self.url,
            region,
            game_mode,
            players,
            self.capacity,
            self._now_ms(),
            round(self.timings.room_ttl_s * 1000),
            tick,
        )
        if reply[0] == "conflict":
            log.warning("room %s is owned by live node %s; not registering it", room_id, reply[1])
            return False
        return True

    async def release(self, room_id: str, seats: int = 1) -> None:
        """``seats`` players of a hosted room left (or their resume window passed)."""
        await self._run("RELEASE", room_id, self.node_id, seats)

    async def close_room(self, room_id: str) -> None:
        """A hosted room closed: remove it from the directory."""
        await self._run("CLOSE_ROOM", room_id, self.node_id)

    async def heartbeat(self, players: int, tick: int, hosted: Sequence[str]) -> HeartbeatReply:
        """Renew this node's lease and its rooms' TTLs (see ``HEARTBEAT`` in scripts.py)."""
        t = self.timings
        reply = await self._run(
            "HEARTBEAT",
            self.node_id,
            self.url,
            ",".join(self.regions),
            self._now_ms(),
            round(t.lease_s * 1000),
            round(t.room_ttl_s * 1000),
            players,
            tick,
            round(t.seat_s * 1000),
            *hosted,
        )
        missing_count = int(reply[1])
        missing = tuple(_text(rid) for rid in reply[2 : 2 + missing_count])
        held = frozenset(_text(rid) for rid in reply[2 + missing_count :])
        return HeartbeatReply(bool(int(reply[0])), missing, held)

    async def reap(self) -> list[str]:
        """Forget every node whose lease lapsed, with its rooms; returns those this call reaped."""
        return [_text(node) for node in await self._run("REAP")]

    async def retire(self) -> None:
        """Clean shutdown: this node and all its rooms leave the directory now."""
        await self._run("RETIRE", self.node_id)

    # -- views -----------------------------------------------------------------------------

    async def rooms(self) -> list[dict[str, object]]:
        """``GET /rooms`` for the whole cluster: live nodes' rooms, with ``node`` and ``url``."""
        room_ids = sorted(await self._call(self.client.smembers(self._key("rooms"))))
        if not room_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for rid in room_ids:
            pipe.hgetall(self._key("room", rid))
        rows = await self._call(pipe.execute())
        nodes = {row["node"] for row in rows if row}
        live = await self._live(nodes)
        return [
            {
                "room_id": rid,
                "region": row["region"],
                "game_mode": row["mode"],
                "players": int(row["players"]),
                "capacity": int(row["capacity"]),
                "tick": int(row.get("tick", 0)),
                "node": row["node"],
                "url": row["url"],
            }
            for rid, row in zip(room_ids, rows, strict=True)
            if row and row["node"] in live
        ]

    async def nodes(self) -> list[dict[str, object]]:
        """``GET /nodes``: ``{node, url, regions, rooms, players, last_seen_ms}`` of live nodes."""
        node_ids = await self._call(self.client.zrange(self._key("nodes"), 0, -1))
        if not node_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for node in node_ids:
            pipe.hgetall(self._key("node", node))
            pipe.scard(self._key("noderooms", node))
            pipe.zscore(self._key("load"), node)
        replies = await self._call(pipe.execute())
        result = []
        for i, node in enumerate(node_ids):
            info, rooms, load = replies[3 * i : 3 * i + 3]
            if not info:
                continue  # lease lapsed: dead, not yet reaped
            result.append(
                {
                    "node": node,
                    "url": info["url"],
                    "regions": [r for r in info["regions"].split(",") if r],
                    "rooms": int(rooms),
                    "players": round(float(load or 0)),
                    "last_seen_ms": int(info["last_seen_ms"]),
                }
            )
        return result

    async def ping(self) -> float:
        """One Redis round trip; returns its duration in seconds."""
        start = time.perf_counter()
        await self._call(self.client.ping())
        return time.perf_counter() - start

    # -- internals -------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def _live(self, nodes: set[str]) -> set[str]:
        if not nodes:
            return set()
        ordered = sorted(nodes)
        pipe = self.client.pipeline(transaction=False)
        for node in ordered:
            pipe.exists(self._key("node", node))
        flags = await self._call(pipe.execute())
        return {node for node, flag in zip(ordered, flags, strict=True) if flag}

    async def _run(self, name: str, *args: object) -> list[Any]:
        script = self._scripts[name]
        return await self._call(script(keys=[], args=[self.namespace, *args]))

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        start = time.perf_counter()
        try:
            result = await awaitable
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(
                f"cluster directory unavailable (Redis at {self.redis_url}): {exc}"
            ) from exc
        if self._on_roundtrip is not None:
            self._on_roundtrip(time.perf_counter() - start)
        return result

    def _placement(self, reply: list[Any]) -> Placement:
        status = _text(reply[0])
        refusal = _REFUSALS.get(status)
        if refusal is not None:
            raise refusal(_MESSAGES[status])
        room_id, node, url, token, created, region, mode = (_text(v) for v in reply[1:8])
        return Placement(
            room_id,
            node,
            url,
            local=status == "ok",
            seat_token=bytes.fromhex(token) if token else None,
            created=created == "1",
            region=region,
            game_mode=mode,
        )
