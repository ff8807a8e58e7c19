"""Tools around the server: headless co-op bots (``astranet-bots``) and the load test
(``astranet-loadtest``).

* :mod:`astranet.tools.bot` -- one bot through the real client library, and its report
* :mod:`astranet.tools.litebot` -- a bot with the same traffic and no prediction (capacity)
* :mod:`astranet.tools.fleet` -- R rooms x 4 bots over worker processes
* :mod:`astranet.tools.bots` -- the ``astranet-bots`` command
* :mod:`astranet.tools.serverproc` -- a server subprocess, ``/metrics`` and ``/proc`` sampling
* :mod:`astranet.tools.loadtest` -- the ``astranet-loadtest`` command (live view, summary)
* :mod:`astranet.tools.plots` -- its PNGs

The tools import no game: ``--game MODULE:ATTR`` names it, and its package's ``bot_kit`` (the
co-op game's: ``astranet.examples.coop.brain``) says how its bots play.
Docs: docs/loadtest.md. Results: docs/benchmarks.md, "Load test (co-op bots)".
"""

from astranet.tools.bot import Bot, BotKit, BotReport, MeasuredLink, bot_kit_of
from astranet.tools.fleet import FleetConfig, FleetResult, WorkerSummary, run_fleet
from astranet.tools.litebot import LiteBot

__all__ = [
    "Bot",
    "BotKit",
    "BotReport",
    "FleetConfig",
    "FleetResult",
    "LiteBot",
    "MeasuredLink",
    "WorkerSummary",
    "bot_kit_of",
    "run_fleet",
]
