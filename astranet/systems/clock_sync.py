"""ClockSyncSystem (Stage.RECEIVE): put the server's clock on this frame's ``ClientFrame``.

The client's esper world is processed once per rendered frame with one argument, a
:class:`~astranet.systems.contract.ClientFrame` (the shared types live in
:mod:`astranet.systems.contract`; they are re-exported here for old imports): what time it
is on the client, and — filled in by this system — the estimated server tick, the smoothed
RTT and the server time of the snapshots arriving now. Every later client system reads those
fields instead of asking the network again, so a frame sees one consistent clock.

The Ping/Pong exchange itself runs in the network shell (``astranet.client.connection`` pings
every ``ping_interval_s`` and folds each Pong into an :class:`astranet.net.clock.ServerClock`
the moment it arrives, so the RTT sample does not include frame time). This system only reads
that estimate through :meth:`ClientLink.clock_estimate`.

Timelines: "tick time" is ``server_tick * tick_ms`` (snapshots of tick T are stamped
``T * tick_ms``). ``arrival_time_ms`` = estimated tick time now minus half the smoothed RTT:
the stamp of a snapshot arriving at this instant. Interpolation renders a delay behind it.
Limits: the estimate is as good as the Pong samples (astranet.net.clock); before the first
Pong the fields are None and the systems fall back to arrival times.
Benchmark: none (a few float operations per frame).
"""

from __future__ import annotations

import esper

from astranet.systems.contract import ClientFrame, ClientLink, ClockEstimate

__all__ = ["ClientFrame", "ClientLink", "ClockEstimate", "ClockSyncSystem"]


class ClockSyncSystem(esper.Processor):
    """Stage.RECEIVE (order 0): copy the link's clock estimate into the frame."""

    def __init__(self, link: ClientLink) -> None:
        self.link = link

    def process(self, frame: ClientFrame) -> None:
        estimate = self.link.clock_estimate(frame.now_ms)
        frame.rtt_ms, frame.rttvar_ms = estimate.rtt_ms, estimate.rttvar_ms
        if estimate.tick_hz is None:
            return
        frame.tick_ms = 1000.0 / estimate.tick_hz
        frame.server_tick = estimate.server_tick
        if estimate.server_tick is not None and estimate.rtt_ms is not None:
            frame.arrival_time_ms = estimate.server_tick * frame.tick_ms - estimate.rtt_ms / 2
