"""The server freezes its boot heap (astranet.server.cli.freeze_boot_heap, gc.freeze).

What boot leaves alive (modules, the game, the server) lives until exit; frozen, the collector's
full collections walk only what came after, so they pause the tick for less.
"""

from __future__ import annotations

import gc
import re

from astranet.server.cli import freeze_boot_heap
from astranet.tools.serverproc import ServerProcess

FROZE = re.compile(r"gc: froze (\d+) objects alive at boot")


class _Alive:
    """Instances are tracked by the collector."""


def test_freeze_boot_heap_takes_the_live_objects_out_of_the_generations() -> None:
    alive = _Alive()  # alive "at boot"
    suite_frozen = gc.get_freeze_count() > 0  # tests/conftest.py froze the collected suite
    try:
        frozen = freeze_boot_heap()
        assert frozen == gc.get_freeze_count() > 10_000  # pytest's own heap, at least
        assert not any(obj is alive for obj in gc.get_objects())  # no collection walks it
        later = [alive]  # made after the freeze: still collected as usual
        assert any(obj is later for obj in gc.get_objects())
    finally:
        gc.unfreeze()  # back into the oldest generation: this process is pytest's
        if suite_frozen:
            gc.freeze()  # as the suite's conftest left it


def test_the_server_process_freezes_once_booted() -> None:
    with ServerProcess("astranet.examples.dots:game") as server:
        froze = server.wait_for_log(FROZE)
    assert int(froze[1]) > 10_000  # the imports, the game and the server: ~70,000
