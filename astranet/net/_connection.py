"""What both sans-I/O connection sides share: the caller-facing outboxes and the close.

websockets' ``Protocol`` shape: the caller feeds ``receive_data``, then drains
``messages_received()`` (validated messages, oldest first) and ``data_to_send()`` (encoded
messages, each one binary WebSocket message), and closes when ``close_expected()`` says so.
Outboxes are swapped, not copied, so each item is delivered exactly once. The inbox is bounded
(``MAX_PENDING_EVENTS``): a caller that stopped draining gets a 1011 close, not a growing list.
"""

from __future__ import annotations

import enum
from typing import ClassVar, Generic, TypeVar

from astranet.net._fields import close_reason
from astranet.net.limits import MAX_PENDING_EVENTS

Received = TypeVar("Received")


class Connection(Generic[Received]):
    """Base of ``ServerConnection`` and ``ClientConnection``; ``CLOSED`` is the phase a
    decided close moves ``phase`` to."""

    CLOSED: ClassVar[enum.Enum]
    phase: enum.Enum

    def __init__(self) -> None:
        self._reset_outboxes()

    def _reset_outboxes(self) -> None:
        self._events: list[Received] = []
        self._writes: list[bytes] = []
        self._close: tuple[int, str] | None = None

    def messages_received(self) -> list[Received]:
        """Validated messages since the last call, oldest first (each delivered once)."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[bytes]:
        """Encoded messages to write, in order, each as one binary WebSocket message."""
        writes, self._writes = self._writes, []
        return writes

    def close_expected(self) -> tuple[int, str] | None:
        """``(close code, reason)`` once the connection must close, else ``None``."""
        return self._close

    def fail(self, code: int, reason: str = "") -> None:
        """Decide to close (handshake timeout, shutdown 1001, a bad peer...). The first close
        wins; further input is ignored."""
        if self._close is None:
            self._close = (code, close_reason(reason))
            self.phase = self.CLOSED

    def _deliver(self, msg: Received) -> bool:
        """Queue ``msg`` for ``messages_received``; False (and close 1011) when the caller
        stopped draining."""
        if len(self._events) >= MAX_PENDING_EVENTS:
            self.fail(1011, "receive queue overflow: the caller is not draining")
            return False
        self._events.append(msg)
        return True
