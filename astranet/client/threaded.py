"""ThreadedClient: run a GameClient on its own asyncio loop in a background thread.

For game loops that are not asyncio (pygame, arcade, a plain ``while running`` loop)::

    client = ThreadedClient(ClientOptions(url="ws://127.0.0.1:8788"))
    accepted = client.start()                 # blocks until joined; raises ConnectFailed etc.
    world = ClientWorld(game, client, read_keyboard, tick_hz=accepted.tick_hz)
    while running:
        view = world.step()                    # receive, reconcile, predict, interpolate
        for event in client.drain_events(): print(event.kind.value)
        draw(view)
    client.stop()

Hand-over is thread-safe: ``send_input``/``ack``/``input_steps_due`` take the client's lock
(an ack rides on the next input, WIRE A1) and ``send_input`` wakes the network loop with
``call_soon_threadsafe``; ``drain_snapshots``/``drain_events``/``clock_estimate``
copy under the same lock. The game thread never touches the socket and the network thread
never touches esper or the stores.
Limits: those of GameClient; ``stop()`` waits at most ``timeout`` seconds for the thread.
Benchmark: none (a thin wrapper).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable

from astranet.client.connection import GameClient
from astranet.client.events import ClientEvent, ClientOptions, ClientStats
from astranet.client.link import ForwardingLink
from astranet.errors import AstranetError, InvalidState
from astranet.net.messages import JoinAccepted
from astranet.replication.events import GameEvent

__all__ = ["ThreadedClient"]


class ThreadedClient(ForwardingLink):
    """A :class:`GameClient` on a background thread; the same thread-safe game-side API.

    The link calls a ClientWorld makes (``now_ms``, ``clock_estimate``, ``ack``,
    ``send_input``, ``drain_snapshots``) are ForwardingLink's, forwarded to ``client``.
    """

    client: GameClient

    def __init__(
        self,
        options: ClientOptions | None = None,
        *,
        on_event: Callable[[ClientEvent], None] | None = None,
    ) -> None:
        """``on_event`` runs on the network thread; prefer ``drain_events()`` in the game."""
        super().__init__(GameClient(options, on_event=on_event))
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._joined: concurrent.futures.Future[JoinAccepted] = concurrent.futures.Future()

    def start(self, timeout: float = 15.0) -> JoinAccepted:
        """Start the thread, connect and join; re-raises the connection's error here."""
        if self._thread is not None:
            raise InvalidState("ThreadedClient.start() called twice")
        self._thread = threading.Thread(target=self._main, name="astranet-client", daemon=True)
        self._thread.start()
        try:
            return self._joined.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            self.stop()
            raise InvalidState(f"not joined within {timeout} s") from exc

    def stop(self, timeout: float = 5.0) -> None:
        """Leave, close the socket and end the thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop already finished
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the game-side API, delegated (all thread-safe in GameClient) ------------------------

    def set_view(self, view: tuple[int, int] | None) -> None:
        self.client.set_view(view)

    def send_command(self, command_type: str, data: bytes = b"") -> int | None:
        return self.client.send_command(command_type, data)

    def drain_game_events(self) -> list[GameEvent]:
        return self.client.drain_game_events()

    def input_steps_due(self, now_ms: float) -> int | None:
        return self.client.input_steps_due(now_ms)

    def drain_events(self) -> list[ClientEvent]:
        return self.client.drain_events()

    @property
    def error(self) -> AstranetError | None:
        return self.client.error

    @property
    def stats(self) -> ClientStats:
        return self.client.stats

    # -- the network thread ------------------------------------------------------------------

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._session())
        finally:
            loop.close()

    async def _session(self) -> None:
        self._stop = asyncio.Event()
        try:
            accepted = await self.client.connect()
        except BaseException as exc:  # handed to start() in the game thread, not swallowed
            self._joined.set_exception(exc)
            return
        self._joined.set_result(accepted)
        stopped = asyncio.create_task(self._stop.wait())
        ended = asyncio.create_task(self.client.wait_closed())
        await asyncio.wait({stopped, ended}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        await self.client.close()
        ended.cancel()
