"""Durability tests' names for the shared harness (astranet.testing, astranet.tools.serverproc).

``WireClient`` is :class:`astranet.testing.TestClient` (a ClientConnection over a real socket:
signed inputs, seqs continuing across Resume); the server subprocess is
:class:`astranet.tools.serverproc.ServerProcess` started by :func:`start_server`.
"""

from __future__ import annotations

import re
from pathlib import Path

from astranet.testing import RECV_TIMEOUT_S, TestClient
from astranet.tools.serverproc import ServerProcess

__all__ = ["RESTORED", "WAIT_S", "ServerProcess", "WireClient", "start_server"]

WAIT_S = RECV_TIMEOUT_S
RESTORED = re.compile(r"ticks continue from (\d+)")
WireClient = TestClient


def start_server(db: Path, *flags: str) -> ServerProcess:
    """``astranet-server --game astranet.examples.dots:game --db DB FLAGS`` on free ports."""
    return ServerProcess("astranet.examples.dots:game", flags, db=db)
