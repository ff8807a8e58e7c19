"""Which asyncio event loop a process runs: uvloop when installed, else asyncio's own.

One rule for every long-running process of the library -- the server (``astranet-server``)
and the load tools' bot workers (``astranet-loadtest``) -- so a load generator is not the
slower side of a capacity run by accident. ``ASTRANET_EVENT_LOOP=asyncio`` forces asyncio's
loop, ``=uvloop`` requires uvloop (``pip install 'astranet[fast]'``), ``auto`` (the default)
takes uvloop when it imports.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from astranet.errors import ConfigurationError

__all__ = ["EVENT_LOOPS", "loop_factory"]

EVENT_LOOPS = ("auto", "asyncio", "uvloop")


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event-loop factory for ``choice`` (default ``$ASTRANET_EVENT_LOOP`` or ``auto``).

    ``None`` means asyncio's default loop. Raises ``ConfigurationError`` for an unknown choice
    or for ``uvloop`` when it is not installed.
    """
    choice = choice or os.environ.get("ASTRANET_EVENT_LOOP") or "auto"
    if choice not in EVENT_LOOPS:
        raise ConfigurationError(
            f"ASTRANET_EVENT_LOOP: expected one of {', '.join(EVENT_LOOPS)}, got {choice!r}"
        )
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigurationError(
                "ASTRANET_EVENT_LOOP=uvloop but uvloop is not installed "
                "(pip install 'astranet[fast]')"
            ) from None
        return None
    return uvloop.new_event_loop
