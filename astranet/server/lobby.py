"""Lobby: what a connection talks to before it has a room (matchmaking and routing).

Operations: :meth:`Lobby.request` takes a ``FindOrCreate``, ``JoinRoom`` or ``Resume`` (the
connection is then in phase ``MATCHING`` and cannot ask again), awaits the
:class:`~astranet.server.matchmaking.MatchmakingBackend` in one task per request, and answers:

* served here -> the :class:`~astranet.server.roomhost.RoomHost` seats (or resumes) the
  player: ``MatchResult`` + ``JoinAccepted`` (v1);
* the room lives on another node (cluster mode, WIRE.md A2) -> ``MatchResult{room_id, url,
  seat_token}`` and nothing more; the client repeats the request at ``url``;
* refused -> ``ProtocolError`` with the refusal's code (no strike), back to the lobby.

A connection that closes while its request is in flight is not seated; a seat the backend took
for it is given back. Requests still in flight at shutdown are cancelled.
Limits: one request per connection at a time (the MATCHING phase), so at most one task per
connection. Benchmark: benchmarks/cluster.py (join latency, with and without a redirect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from astranet.errors import BadRequest, Busy, InvalidState, MatchmakingError
from astranet.net.messages import FindOrCreate, JoinRoom, MatchResult, Resume
from astranet.server.matchmaking import Match, MatchmakingBackend
from astranet.server.roomhost import RoomHost
from astranet.server.session import Session

__all__ = ["Lobby"]

log = logging.getLogger("astranet.server")

MatchRequest = FindOrCreate | JoinRoom | Resume


class Lobby:
    """Routes matchmaking requests between the backend and the room host."""

    def __init__(
        self,
        host: RoomHost,
        backend: MatchmakingBackend,
        *,
        may_create_room: Callable[[Session], bool] = lambda session: True,
        on_redirect: Callable[[], None] | None = None,
    ) -> None:
        self.host = host
        self.backend = backend
        self._may_create_room = may_create_room
        self._on_redirect = on_redirect
        #: Redirects answered (A2).
        self.redirects = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def request(self, session: Session, message: MatchRequest) -> None:
        """Start answering ``message`` (called synchronously by the server's dispatch)."""
        task = asyncio.create_task(self._answer(session, message), name="astranet-match")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel requests in flight (shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _answer(self, session: Session, message: MatchRequest) -> None:
        if _gone(session):
            return
        try:
            if isinstance(message, Resume):
                match = await self.backend.route_resume(message.room_id)
                if _gone(session):
                    return
                if match is None:
                    self.host.resume(session, message)
                else:
                    self._redirect(session, match)
                return
            if isinstance(message, FindOrCreate):
                # One seat per sub (A4): an identity that holds a seat takes it over.
                if self.host.take_over_own_seat(session, message.region, message.game_mode, None):
                    return
                match = await self.backend.find_or_create(
                    message.region, message.game_mode, message.party_size
                )
            else:
                if self.host.take_over_own_seat(session, None, None, message.room_id):
                    return
                match = await self.backend.join_room(
                    message.room_id, message.seat_token, message.party_token
                )
            if match.url is not None:
                if not _gone(session):
                    self._redirect(session, match)
                return
            if _gone(session):
                self.host.give_back_seat(match.room_id)
                return
            if match.created and not self._may_create_room(session):
                self.host.give_back_seat(match.room_id)
                self.host.abandon_new_room(match.room_id)
                raise Busy("busy: too many rooms created from this address; try again in a minute")
            self.host.seat_in(session, match, build=isinstance(message, FindOrCreate))
        except (MatchmakingError, BadRequest) as exc:
            # Refusals of well-formed requests (unknown region, room full, seat expired,
            # directory unavailable): a reply, no strike, and the client may ask again.
            if not _gone(session):
                session.send_error(exc)
        except InvalidState:
            log.debug("%s: matchmaking reply after close decision dropped", session.peer)

    def _redirect(self, session: Session, match: Match) -> None:
        self.redirects += 1
        if self._on_redirect is not None:
            self._on_redirect()
        session.send(
            MatchResult(match.room_id, match.url, match.seat_token, party_token=match.party_token)
        )


def _gone(session: Session) -> bool:
    return session.closed.is_set() or session.conn.close_expected() is not None
