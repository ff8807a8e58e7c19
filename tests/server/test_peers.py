"""PeerBounds: per-address connection count, connect rate and room-creation rate (WIRE A4)."""

from __future__ import annotations

from astranet.server.peers import CONNECT_BURST, PeerBounds, peer_address


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_connections_are_counted_per_address_and_zero_is_unbounded() -> None:
    bounds = PeerBounds(2, 0)
    assert bounds.connection_opened("a") and bounds.connection_opened("a")
    assert not bounds.connection_opened("a") and bounds.connection_opened("b")
    bounds.connection_closed("a")
    assert bounds.connection_opened("a")
    assert bounds.refused_connections == 1
    unbounded = PeerBounds(0, 0)
    assert all(unbounded.connection_opened("a") for _ in range(1000))
    assert all(unbounded.may_connect("a") for _ in range(1000))


def test_connect_rate_burst_then_refill() -> None:
    clock = Clock()
    bounds = PeerBounds(256, 0, clock=clock)
    admitted = sum(bounds.may_connect("a") for _ in range(1000))
    assert admitted == CONNECT_BURST and bounds.dropped_connects == 1000 - CONNECT_BURST
    assert bounds.may_connect("b")  # another address is unaffected
    clock.now += 1.0
    assert 60 <= sum(bounds.may_connect("a") for _ in range(1000)) <= 70


def test_rooms_per_minute_bucket() -> None:
    clock = Clock()
    bounds = PeerBounds(0, 3, clock=clock)
    assert [bounds.may_create_room("a") for _ in range(4)] == [True, True, True, False]
    clock.now += 20.0  # 3 per minute: one back after 20 s
    assert bounds.may_create_room("a") and not bounds.may_create_room("a")
    assert PeerBounds(0, 0).may_create_room("a")


def test_peer_address() -> None:
    assert peer_address(("10.0.0.1", 5)) == "10.0.0.1"
    assert peer_address(None) == "?"
