"""Per-peer-address bounds (WIRE A4): open connections and rooms created per minute.

Operations: ``may_connect(address)`` -> False when the address opens new TCP connections faster
than ``CONNECT_RATE_PER_S`` (burst ``CONNECT_BURST``): the edge drops the socket before parsing
anything, so a burst of a thousand sockets costs microseconds each, not a WebSocket handshake
each; ``connection_opened(address)`` -> False when the address already holds
``max_connections`` (the edge closes the new socket 1013); ``connection_closed(address)`` for
every opened one; ``may_create_room(address)`` -> False when the address created
``max_rooms_per_minute`` rooms within the last minute (the request gets ``busy``).

Why per address: it is the only identity an anonymous attacker cannot mint for free. The
defaults (``ServerConfig``) are generous for a LAN party or a test suite behind one address.
``0`` means unbounded. Room creation is a token bucket of ``max_rooms_per_minute`` refilled
at that rate per minute: a burst of the whole allowance at once, then a steady rate.

Limits: the table of room buckets is bounded (``MAX_TRACKED_PEERS``, least recently used
dropped: a dropped address starts again with a full bucket, which only forgives). Counts of
open connections are exact (an entry lives while the address has a socket). Pure and
synchronous; time comes from an injected clock. Benchmark: benchmarks/abuse.py.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from astranet.net.ratelimit import TokenBucket

__all__ = ["MAX_TRACKED_PEERS", "PeerBounds", "peer_address"]

MAX_TRACKED_PEERS = 65_536  # buckets kept per kind; ~200 bytes each, ~13 MB at the bound
#: New connections per second per address, and the burst. A LAN party joining at once is a
#: dozen; a test suite on loopback opens ~100 within a second; reconnecting clients back off.
#: An attacker's burst of 1,000 sockets gets 128 handshakes, the rest are dropped unparsed.
CONNECT_RATE_PER_S = 64.0
CONNECT_BURST = 128.0


def peer_address(remote: object) -> str:
    """The address part of a socket peer name (``("1.2.3.4", 5678)`` -> ``"1.2.3.4"``)."""
    if isinstance(remote, tuple) and remote:
        return str(remote[0])
    return "?"


class PeerBounds:
    """Connection and room-creation bounds keyed by peer address."""

    def __init__(
        self,
        max_connections: int,
        max_rooms_per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_connections = max_connections
        self.max_rooms_per_minute = max_rooms_per_minute
        self._clock = clock
        self._connections: dict[str, int] = {}
        self._room_buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._connect_buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.refused_connections = 0
        self.refused_rooms = 0
        self.dropped_connects = 0

    def may_connect(self, address: str) -> bool:
        """Charge one new TCP connection to ``address`` (unbounded when connections are)."""
        if not self.max_connections:
            return True
        if self._take(self._connect_buckets, address, CONNECT_RATE_PER_S, CONNECT_BURST):
            return True
        self.dropped_connects += 1
        return False

    def _take(
        self, table: OrderedDict[str, TokenBucket], address: str, rate: float, burst: float
    ) -> bool:
        bucket = table.get(address)
        if bucket is None:
            bucket = TokenBucket(rate, burst, self._clock)
            table[address] = bucket
            while len(table) > MAX_TRACKED_PEERS:
                table.popitem(last=False)
        else:
            table.move_to_end(address)
        return bucket.try_take()

    def connection_opened(self, address: str) -> bool:
        """Count a new connection; False (and nothing counted) if the address is at its bound."""
        held = self._connections.get(address, 0)
        if self.max_connections and held >= self.max_connections:
            self.refused_connections += 1
            return False
        self._connections[address] = held + 1
        return True

    def connection_closed(self, address: str) -> None:
        """Forget one connection counted by ``connection_opened``."""
        held = self._connections.get(address, 0) - 1
        if held > 0:
            self._connections[address] = held
        else:
            self._connections.pop(address, None)

    def connections(self, address: str) -> int:
        return self._connections.get(address, 0)

    def may_create_room(self, address: str) -> bool:
        """Charge one room creation to ``address``; False when it is over its bound."""
        per_minute = self.max_rooms_per_minute
        if not per_minute:
            return True
        if self._take(self._room_buckets, address, per_minute / 60.0, per_minute):
            return True
        self.refused_rooms += 1
        return False
