"""GameClient reads *how* a socket closed from the reader, even when the writer noticed first.

The cause of the flaky ``test_kick_is_final_not_retried`` (issue 11): when the server kicks a
client (close 1008), the client's writer may try to send an input into the closing socket and
end before the reader has returned the close frame. ``_serve`` used to take whichever task
ended first, so it saw the writer's "connection lost" (1006, resumable) instead of the kick
(1008, final), and resumed. Here a scripted socket makes the writer always end first.
"""

from __future__ import annotations

import asyncio

from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from astranet.client import ClientOptions, GameClient

KICK = Close(1008, "movement sanity: impossible speed")


class _Transport:
    def abort(self) -> None:
        pass


class ClosingSocket:
    """A socket the server just closed 1008: sends fail at once, the close frame follows."""

    def __init__(self) -> None:
        self.close_code: int | None = None
        self.transport = _Transport()
        self._close_frame_arrived = asyncio.Event()

    async def send(self, data: bytes) -> None:
        self._close_frame_arrived.set()  # the reader gets the frame just after this fails
        raise ConnectionClosed(KICK, None)

    async def recv(self) -> bytes:
        await self._close_frame_arrived.wait()
        await asyncio.sleep(0)  # one more loop turn: the writer has ended by now
        self.close_code = KICK.code
        raise ConnectionClosed(KICK, None)

    async def close(self, *args: object) -> None:
        pass


async def test_a_kick_noticed_first_by_the_writer_is_still_a_kick() -> None:
    client = GameClient(ClientOptions(ping_interval_s=60.0))
    client.conn.hello()  # something queued: the writer sends at once and meets the close
    code, reason = await client._serve(ClosingSocket())  # type: ignore[arg-type]
    assert (code, reason) == (1008, "movement sanity: impossible speed")
