"""Room ownership with fencing: exactly one node hosts a room, also across its node's death.

Each room has an owner record ``{store}room:{id}:owner`` = ``{node, epoch}`` next to its
checkpoint (``astranet.storage.redis``). The epoch only ever grows. Operations, each one Lua
script (atomic against every other node):

* ``claim(room_id)`` -- a ``Resume`` reached this node for a room it does not host. If the
  owner is another node whose lease (``{ns}:node:{id}``, kept by
  :class:`~astranet.cluster.leases.NodeLease`) is still alive: :class:`Claim` ``elsewhere``
  with that node's url (the caller redirects, WIRE A2). If the room is not in the store (never
  existed, or closed): ``unknown``. Otherwise the owner is dead (or this node's own previous
  incarnation): the epoch is incremented and this node becomes the owner -- ``claimed``. Two
  nodes claiming at once: the script runs one after the other, so the second sees a live owner
  and redirects. One room, one owner (A3).
* ``check()`` -- the epoch-carrying heartbeat: for every room in the :class:`Fence` it asks
  whether ``{node, epoch}`` still matches; rooms that another node claimed meanwhile are
  dropped from the fence and returned, so the server closes their sessions (a node that was
  paused, SIGSTOP or a network cut, notices it lost the room). ``watch()`` runs it every
  ``interval_s`` in one task per node.
* ``release(room_id)`` -- forget a room locally (closed or shut down); its record stays.

Every checkpoint and record write of a room is fenced by the same ``{node, epoch}`` in
``RedisStorage`` (refused with ``FencedOut``), so a stale owner writes nothing even before
its next ``check()``.

Limits: liveness is the cluster lease; a node cut off from Redis keeps serving its rooms
until Redis answers again (it cannot learn it lost them), and its writes are refused.
Benchmark: benchmarks/failover.py (kill -9 of a node: resume latency).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from astranet.cluster.directory import DEFAULT_NAMESPACE
from astranet.errors import ClusterUnavailable
from astranet.storage.redis import DEFAULT_PREFIX, Fence

__all__ = ["Claim", "RoomOwnership"]

log = logging.getLogger(__name__)

# ARGV: ns, store prefix, room_id, me. Returns {'unknown'} | {'elsewhere', node, url}
# | {'claimed', epoch, previous_node, previous_epoch}.
_CLAIM = """
local ns, prefix, rid, me = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local room_key = prefix .. 'room:' .. rid
if redis.call('EXISTS', room_key) == 0 or redis.call('HEXISTS', room_key, 'closed_at') == 1 then
  return {'unknown'}
end
local owner_key = room_key .. ':owner'
local owner = redis.call('HMGET', owner_key, 'node', 'epoch')
if owner[1] and owner[1] ~= me and redis.call('EXISTS', ns .. ':node:' .. owner[1]) == 1 then
  return {'elsewhere', owner[1], redis.call('HGET', ns .. ':node:' .. owner[1], 'url') or ''}
end
local epoch = redis.call('HINCRBY', owner_key, 'epoch', 1)
redis.call('HSET', owner_key, 'node', me)
return {'claimed', epoch, owner[1] or '', owner[2] or '0'}
"""

# ARGV: store prefix, me, then pairs (room_id, epoch). Returns the room ids no longer ours.
_CHECK = """
local prefix, me = ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV, 2 do
  local owner = redis.call('HMGET', prefix .. 'room:' .. ARGV[i] .. ':owner', 'node', 'epoch')
  if owner[1] ~= me or owner[2] ~= ARGV[i + 1] then table.insert(lost, ARGV[i]) end
end
return lost
"""


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of :meth:`RoomOwnership.claim`.

    ``kind``: ``claimed`` (this node owns the room now, at ``epoch``; restore it), ``elsewhere``
    (a live ``node`` at ``url`` owns it: redirect) or ``unknown`` (no such open room).
    ``previous_node`` is who owned it before a claim.
    """

    kind: str
    room_id: str
    epoch: int = 0
    node: str = ""
    url: str = ""
    previous_node: str = ""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RoomOwnership:
    """One node's view of room ownership. Shares ``fence`` with its RedisStorage."""

    def __init__(
        self,
        client: aioredis.Redis,
        fence: Fence,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        store_prefix: str = DEFAULT_PREFIX,
        redis_url: str = "redis",
    ) -> None:
        self.client = client
        self.fence = fence
        self.namespace = namespace
        self.store_prefix = store_prefix
        self.redis_url = redis_url
        self.claims = 0  # rooms this node took over (for /metrics and tests)
        self.lost = 0  # rooms another node took from this one
        self._claim = client.register_script(_CLAIM)
        self._check = client.register_script(_CHECK)
        self._task: asyncio.Task[None] | None = None

    @property
    def node_id(self) -> str:
        return self.fence.node_id

    async def claim(self, room_id: str) -> Claim:
        """Take ``room_id`` over if its owner is dead (see the module docstring)."""
        reply = await self._call(
            self._claim(keys=[], args=[self.namespace, self.store_prefix, room_id, self.node_id])
        )
        kind = _text(reply[0])
        if kind == "elsewhere":
            return Claim(kind, room_id, node=_text(reply[1]), url=_text(reply[2]))
        if kind == "claimed":
            epoch = int(reply[1])
            self.fence.hold(room_id, epoch)
            self.claims += 1
            previous = _text(reply[2])
            log.warning(
                "took over room %s from node %s (epoch %s -> %d)",
                room_id,
                previous or "nobody",
                _text(reply[3]),
                epoch,
            )
            return Claim(kind, room_id, epoch=epoch, node=self.node_id, previous_node=previous)
        return Claim("unknown", room_id)

    async def check(self) -> list[str]:
        """Rooms another node owns now (dropped from the fence); see the module docstring."""
        held = self.fence.held()
        if not held:
            return []
        args: list[object] = [self.store_prefix, self.node_id]
        for room_id, epoch in held.items():
            args += [room_id, epoch]
        lost = [_text(room_id) for room_id in await self._call(self._check(keys=[], args=args))]
        for room_id in lost:
            # Only if unchanged meanwhile: a claim may have re-taken it during the round trip.
            if self.fence.epoch_of(room_id) == held[room_id]:
                self.fence.drop(room_id)
                self.lost += 1
                log.error("lost room %s to another node (held epoch %d)", room_id, held[room_id])
        return lost

    def release(self, room_id: str) -> None:
        self.fence.drop(room_id)

    def watch(self, interval_s: float, on_lost: Callable[[list[str]], None]) -> None:
        """Run :meth:`check` every ``interval_s`` and hand lost rooms to ``on_lost``."""
        if self._task is None:
            self._task = asyncio.create_task(
                self._watch(interval_s, on_lost), name=f"astranet-ownership-{self.node_id}"
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self, interval_s: float, on_lost: Callable[[list[str]], None]) -> None:
        while True:
            await asyncio.sleep(interval_s)  # a period, not synchronisation
            try:
                lost = await self.check()
            except ClusterUnavailable as exc:
                log.warning("ownership check failed (rooms keep running): %s", exc)
                continue
            if lost:
                on_lost(lost)

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(f"Redis at {self.redis_url}: {exc}") from exc
