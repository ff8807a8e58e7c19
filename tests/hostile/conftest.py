"""Fixtures of the hostile suite: a real server process, a bystander process, a log check.

The server runs as its own process (``astranet.tools.serverproc``), the bystander too
(``python -m astranet.tools.bystander``), and the attacker in the test process binds
127.0.0.2, so per-address bounds hit the attacker and not the bystander (127.0.0.1).

Under load the 2-core machine may make even an unattacked server miss the bystander goal. A
test that sees the goal missed under attack therefore measures a *control* window with no
attack on the same server: if the control misses too, the machine is too loaded to prove
anything and the test is skipped with both figures; if the control meets the goal, the attack
is to blame and the test fails. The goal itself is never loosened.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from astranet.tools.bystander import BystanderProcess, BystanderReport
from astranet.tools.serverproc import ServerProcess

MIN_RATE = 28.0  # WIRE A4: bystanders keep >= 28 snapshots/s ...
MAX_GAP_MS = 250.0  # ... and issue 16: no gap of 250 ms or more
WINDOW_S = 3.0
# What must never appear in the server's log, whatever a client sends.
SERVER_FAULT = re.compile(r"Traceback|\bERROR\b|Exception in callback|Fatal error")


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(*flags: str) -> ServerProcess:
        server = ServerProcess(
            "astranet.examples.coop:game", ["--checkpoint-interval", "5", *flags]
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


async def bystander(url: str, seconds: float = WINDOW_S) -> BystanderReport:
    """Run the bystander process for ``seconds`` (plus join and warm-up) and parse its line."""
    async with BystanderProcess(url, seconds, warmup_s=0.5) as child:
        return await child.report()


async def under_attack(
    url: str, attack: Callable[[], Awaitable[Any]], *, seconds: float = WINDOW_S
) -> tuple[BystanderReport, Any]:
    """Measure a bystander while ``attack()`` runs; control run on a miss (module docstring)."""
    measuring = asyncio.create_task(bystander(url, seconds))
    await asyncio.sleep(0.3)  # the bystander is joining: let the attack overlap its window
    outcome = await attack()
    report = await measuring
    if not report.meets(MIN_RATE, MAX_GAP_MS):
        control = await bystander(url, seconds)
        if not control.meets(MIN_RATE, MAX_GAP_MS):
            pytest.skip(f"machine too loaded: control {control} as well as attack {report}")
        pytest.fail(f"attack hurt the bystander: {report} (control without attack: {control})")
    return report, outcome


def server_faults(server: ServerProcess) -> list[str]:
    """Lines of the server's log that show a server-side exception or error."""
    text = server.log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if SERVER_FAULT.search(line)]
