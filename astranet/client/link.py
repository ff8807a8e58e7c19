"""ForwardingLink: a ClientWorld link that wraps a client to watch what passes through.

Tools and windows that measure the netcode (input-to-snapshot latency, snapshot arrival times)
sit between the :class:`~astranet.client.world.ClientWorld` and its
:class:`~astranet.client.GameClient` or :class:`~astranet.client.ThreadedClient`. This base
forwards the link's calls; a subclass overrides the ones it records
(``astranet.tools.bot.MeasuredLink``, the co-op window's ``MeteredLink``).
Limits: none. Benchmark: none.
"""

from __future__ import annotations

from typing import Protocol

from astranet.systems.contract import ClockEstimate, ReceivedSnapshot

__all__ = ["ForwardingLink", "LinkTarget"]


class LinkTarget(Protocol):
    """What GameClient and ThreadedClient both offer a ClientWorld."""

    def now_ms(self) -> float: ...

    def clock_estimate(self, now_ms: float) -> ClockEstimate: ...

    def ack(self, snapshot_id: int) -> None: ...

    def send_input(self, blob: bytes) -> int | None: ...

    def drain_snapshots(self) -> list[ReceivedSnapshot]: ...


class ForwardingLink:
    """Forwards every call of the ClientWorld's link to ``client``."""

    def __init__(self, client: LinkTarget) -> None:
        self.client = client

    def now_ms(self) -> float:
        return self.client.now_ms()

    def clock_estimate(self, now_ms: float) -> ClockEstimate:
        return self.client.clock_estimate(now_ms)

    def ack(self, snapshot_id: int) -> None:
        self.client.ack(snapshot_id)

    def send_input(self, blob: bytes) -> int | None:
        return self.client.send_input(blob)

    def drain_snapshots(self) -> list[ReceivedSnapshot]:
        return self.client.drain_snapshots()
