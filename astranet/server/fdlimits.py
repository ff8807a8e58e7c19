"""File descriptors: raise the process limit at start, and survive running out of them.

Operations: :func:`raise_nofile_limit` lifts ``RLIMIT_NOFILE``'s soft limit to its hard limit
(the common default soft limit of 1,024 is ~1,000 players; the hard limit is usually 500k+);
:func:`install_accept_error_handler` makes the event loop's "out of descriptors" reports quiet.

Why the handler: when ``accept()`` fails with EMFILE/ENFILE/ENOBUFS/ENOMEM, asyncio pauses that
listener for 1 s (``ACCEPT_RETRY_DELAY``) and reports it through the loop's exception handler,
whose default logs a full traceback every time, for every listener: an attacker who fills the
descriptor table buys kilobytes of log per second. The handler logs the first report of an
episode once (WARNING, no traceback), counts every one, and logs again only after
``QUIET_S`` without reports (a new episode). Everything else goes to the previous handler.
Benchmark: benchmarks/abuse.py (``fd_exhaustion``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "ACCEPT_EXHAUSTED_MESSAGE",
    "FD_RESERVE",
    "AcceptErrorHandler",
    "fd_capacity",
    "raise_nofile_limit",
]

log = logging.getLogger("astranet.server")

ACCEPT_EXHAUSTED_MESSAGE = "socket.accept() out of system resource"  # asyncio's wording
QUIET_S = 60.0  # a report after this long without one starts a new (logged) episode
#: Descriptors kept free of WebSocket connections: the HTTP side port (/healthz must answer),
#: the database and its WAL, Redis, the event loop, logs.
FD_RESERVE = 128


def fd_capacity() -> int:
    """How many WebSocket connections fit under the soft ``RLIMIT_NOFILE`` minus the reserve."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return 1 << 30
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    return max(16, soft - FD_RESERVE)


def raise_nofile_limit() -> tuple[int, int]:
    """Set the soft ``RLIMIT_NOFILE`` to the hard limit; returns ``(soft, hard)`` after.

    No-op where ``resource`` is missing (Windows) or the limit cannot be changed.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return (-1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise RLIMIT_NOFILE from %d to %d: %s", soft, target, exc)
    return resource.getrlimit(resource.RLIMIT_NOFILE)


class AcceptErrorHandler:
    """A loop exception handler: quiet, counted accept-exhaustion reports; others passed on."""

    def __init__(
        self,
        on_exhausted: Callable[[], None] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_exhausted = on_exhausted
        self._clock = clock
        self._previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None = None
        self._last_report = -float("inf")
        self.reports = 0

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self)

    def uninstall(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop.get_exception_handler() is self:
            loop.set_exception_handler(self._previous)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != ACCEPT_EXHAUSTED_MESSAGE:
            if self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self.reports += 1
        if self._on_exhausted is not None:
            self._on_exhausted()
        now = self._clock()
        if now - self._last_report >= QUIET_S:
            log.warning(
                "out of file descriptors (%s): not accepting for 1 s at a time; "
                "further reports are counted, not logged",
                context.get("exception"),
            )
        self._last_report = now
