"""Sans-I/O client side of the protocol: method calls and bytes in, messages and bytes out.

The asyncio client (and any test) drives it like the server side::

    conn = ClientConnection()
    conn.hello(); conn.find_or_create("us-east", "coop")   # pipelining is allowed
    for data in conn.data_to_send(): await ws.send(data)
    conn.receive_data(await ws.recv())
    for msg in conn.messages_received(): ...             # HelloAck, MatchResult, JoinAccepted..
    seq = conn.send_input(blob, tick_ms)                   # numbered and signed for you

It tracks what a client must remember: ``phase``, ``session_key``, ``room_id``, ``player_id``,
``resume_token``, ``entity``, the next input ``seq`` (continuing across a resume, so the
server's replay guard keeps working) and the last ``MAX_ACK_HISTORY`` acked snapshot ids.

WIRE A1: ``hello(compact=True)`` asks for the compact Snapshot envelope (``compact_granted``
tells what HelloAck said; both envelopes decode either way), and ``send_input(blob, ack=id)``
folds an ack into the frame: one message per tick instead of two.

Reconnecting: keep the object, call ``reset_transport()`` when the WebSocket drops, then on
the new socket ``hello()`` and ``resume()`` (which defaults to the remembered identity).

Schema check: with ``schema_fingerprint`` set, ``Hello`` carries it (the server refuses another
schema with ``schema_mismatch``) and a ``JoinAccepted`` naming another schema is refused here:
``last_error`` becomes :class:`~astranet.errors.SchemaMismatch` and the connection closes 1002.

A server message that does not decode is dropped, stored in ``last_error``, and makes
``close_expected()`` return ``(1002, reason)`` (``1009`` when oversize): a client should not
keep talking to a server that breaks the protocol. Clock: nothing here reads time except
through the injected ``clock`` (defaults for ``tick_ms``/``client_time_ms``).
Benchmark: none separate (the client path is the server path mirrored).
"""

from __future__ import annotations

import enum
import time
from collections import deque

from astranet.errors import (
    InvalidState,
    LocalProtocolError,
    ProtocolError,
    SchemaMismatch,
    schema_mismatch_message,
)
from astranet.net._connection import Connection
from astranet.net.limits import (
    MAX_ACK_HISTORY,
    MAX_MESSAGE_BYTES,
    MAX_PENDING_MESSAGES,
    PROTOCOL_VERSION,
    U32_MAX,
)
from astranet.net.messages import (
    Ack,
    ClientMessage,
    Command,
    FindOrCreate,
    Hello,
    HelloAck,
    InputFrame,
    JoinAccepted,
    JoinRoom,
    Leave,
    MatchResult,
    Ping,
    Resume,
    ServerMessage,
    decode_server_message,
    encode,
)
from astranet.net.ratelimit import Clock
from astranet.net.signing import InputSigner, command_key, sign_command

__all__ = ["ClientConnection", "ClientPhase"]


class ClientPhase(enum.Enum):
    IDLE = "idle"  # nothing sent on this socket yet
    AWAIT_HELLO_ACK = "await_hello_ack"
    LOBBY = "lobby"
    IN_ROOM = "in_room"
    LEAVING = "leaving"  # Leave sent; the server closes 1000
    CLOSED = "closed"


_C = ClientPhase
_BEFORE_ROOM = frozenset({_C.AWAIT_HELLO_ACK, _C.LOBBY})
_TALKING = frozenset({_C.AWAIT_HELLO_ACK, _C.LOBBY, _C.IN_ROOM})
_IDLE = frozenset({_C.IDLE})
_IN_ROOM = frozenset({_C.IN_ROOM})  # built once: send_input checks it 30 times a second
#: Phase changes on messages received: (phase, message type) -> next phase.
TRANSITIONS: dict[tuple[ClientPhase, type], ClientPhase] = {
    (_C.AWAIT_HELLO_ACK, HelloAck): _C.LOBBY,
    (_C.AWAIT_HELLO_ACK, JoinAccepted): _C.IN_ROOM,  # pipelined Hello + FindOrCreate
    (_C.LOBBY, JoinAccepted): _C.IN_ROOM,
}


class ClientConnection(Connection[ServerMessage]):
    """Protocol state of one player, as seen by the client. See the module docstring."""

    CLOSED = ClientPhase.CLOSED

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        first_seq: int = 1,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        schema_fingerprint: int | None = None,
    ) -> None:
        """``clock`` (seconds) only supplies default ``tick_ms``/``client_time_ms``;
        ``schema_fingerprint`` is the ``Schema.fingerprint`` this client decodes (None: any)."""
        if type(first_seq) is not int or not 0 <= first_seq <= U32_MAX:
            raise LocalProtocolError(f"first_seq must be a u32, got {first_seq!r}")
        self.max_message_bytes = max_message_bytes
        self.schema_fingerprint = schema_fingerprint
        self._clock = clock
        super().__init__()
        self.phase: ClientPhase = ClientPhase.IDLE
        self.session_key: bytes | None = None
        self.room_id: str | None = None
        #: WIRE A4: the party token of our FindOrCreate(party_size > 1); give it to friends
        #: for their ``join_room(room_id, party_token)``.
        self.party_token: bytes | None = None
        #: WIRE A2: the last redirecting MatchResult (``url``, ``room_id``, ``seat_token``).
        self.redirect: MatchResult | None = None
        self.player_id: str | None = None
        self.resume_token: bytes | None = None
        self.entity: int | None = None
        self.tick_hz: int | None = None
        self.last_acked_snapshot_id: int | None = None
        #: HelloAck's ``compact`` on this socket: True/False if asked, None if not asked.
        self.compact_granted: bool | None = None
        #: HelloAck's ``events``: True if the event channel was granted, None if not asked.
        self.events_granted: bool | None = None
        self.last_error: ProtocolError | None = None
        self.next_seq = first_seq
        self.next_command_seq = 1  # Command seqs, numbered on across resumes like inputs
        self._acked: deque[int] = deque(maxlen=MAX_ACK_HISTORY)
        self._signer: InputSigner | None = None

    # ------------------------------------------------------------------------- sending

    def hello(
        self, *, compact: bool = False, token: str | None = None, events: bool = False
    ) -> None:
        """Queue Hello; ``compact`` asks for the compact Snapshot envelope (WIRE A1);
        ``token`` is the player's JWT for a server with authentication (WIRE A4); ``events``
        asks for reliable game events (``Events`` messages)."""
        self._require(_IDLE, "hello")
        compact_asked = True if compact else None
        self._queue(
            Hello(
                PROTOCOL_VERSION,
                compact_asked,
                token=token,
                schema=self.schema_fingerprint,
                events=True if events else None,
            )
        )
        self.phase = ClientPhase.AWAIT_HELLO_ACK

    def find_or_create(self, region: str, game_mode: str, party_size: int = 1) -> None:
        self._require(_BEFORE_ROOM, "find_or_create")
        self._queue(FindOrCreate(region, game_mode, party_size))

    def join_room(
        self,
        room_id: str,
        party_token: bytes | None = None,
        seat_token: bytes | None = None,
    ) -> None:
        """JoinRoom; ``party_token`` (from the party leader) takes one of its held seats;
        ``seat_token`` (from a redirecting MatchResult, A2) the seat held for us there."""
        self._require(_BEFORE_ROOM, "join_room")
        self._queue(JoinRoom(room_id, seat_token=seat_token, party_token=party_token))

    def resume(
        self,
        room_id: str | None = None,
        player_id: str | None = None,
        resume_token: bytes | None = None,
    ) -> None:
        """Ask for the held seat back; arguments default to the remembered identity."""
        self._require(_BEFORE_ROOM, "resume")
        room_id = room_id if room_id is not None else self.room_id
        player_id = player_id if player_id is not None else self.player_id
        resume_token = resume_token if resume_token is not None else self.resume_token
        if room_id is None or player_id is None or resume_token is None:
            raise InvalidState("resume needs room_id, player_id and resume_token")
        self._queue(Resume(room_id, player_id, resume_token))

    def send_input(
        self,
        blob: bytes,
        tick_ms: int | None = None,
        *,
        ack: int | None = None,
        view: tuple[int, int] | None = None,
    ) -> int:
        """Number, sign and queue one input frame; returns its ``seq``.

        ``tick_ms`` defaults to the injected clock in milliseconds. ``ack`` folds an ``Ack``
        of that snapshot id into the frame (WIRE A1), recorded as by :meth:`ack`. ``view`` is
        the ``(view_tick, view_frac)`` the client was rendering at (lag compensation), signed.
        """
        self._require(_IN_ROOM, "send_input")
        if tick_ms is None:
            tick_ms = self._now_ms()
        assert self._signer is not None  # IN_ROOM implies JoinAccepted installed it
        seq = self.next_seq
        if seq > U32_MAX:
            raise LocalProtocolError("input seq space (u32) exhausted; reconnect as a new player")
        sig = self._signer.sign(seq, tick_ms, blob, view)
        view_tick, view_frac = view if view is not None else (None, None)
        self._queue(InputFrame(seq, tick_ms, blob, sig, ack, view_tick, view_frac))
        self.next_seq = seq + 1
        if ack is not None:
            self._acked.append(ack)
            self.last_acked_snapshot_id = ack
        return seq

    def send_command(self, command_type: str, data: bytes = b"") -> int:
        """Number, sign and queue one game ``Command``; returns its seq. Needs the event
        channel (``hello(events=True)`` granted): raises InvalidState otherwise."""
        self._require(_IN_ROOM, "send_command")
        if not self.events_granted:
            raise InvalidState("send_command needs the event channel (HelloAck.events)")
        assert self.session_key is not None  # IN_ROOM implies JoinAccepted
        seq = self.next_command_seq
        if seq > U32_MAX:
            raise LocalProtocolError("command seq space (u32) exhausted")
        sig = sign_command(command_key(self.session_key), seq, command_type, data)
        self._queue(Command(seq, command_type, data, sig))
        self.next_command_seq = seq + 1
        return seq

    def ack(self, snapshot_id: int) -> None:
        """Acknowledge a snapshot so the server may delta against it."""
        self._require(_IN_ROOM, "ack")
        self._queue(Ack(snapshot_id))
        self._acked.append(snapshot_id)
        self.last_acked_snapshot_id = snapshot_id

    @property
    def acked_snapshot_ids(self) -> tuple[int, ...]:
        """The last ``MAX_ACK_HISTORY`` acked ids, oldest first."""
        return tuple(self._acked)

    def ping(self, nonce: int, client_time_ms: int | None = None) -> None:
        """Queue a Ping; ``client_time_ms`` defaults to the injected clock in ms."""
        self._require(_TALKING, "ping")
        if client_time_ms is None:
            client_time_ms = self._now_ms()
        self._queue(Ping(nonce, client_time_ms))

    def leave(self) -> None:
        self._require(_TALKING, "leave")
        self._queue(Leave())
        self.phase = ClientPhase.LEAVING

    # ----------------------------------------------------------------------- receiving

    def receive_data(self, data: bytes) -> None:
        """Take one complete WebSocket message from the server; then drain the outboxes."""
        if self._close is not None:
            return
        try:
            msg = decode_server_message(data, max_bytes=self.max_message_bytes)
        except ProtocolError as exc:
            self.last_error = exc
            self.fail(exc.close_code or 1002, f"bad server message: {exc.message}")
            return
        kind = type(msg)
        if kind is JoinAccepted:
            theirs, ours = msg.schema, self.schema_fingerprint  # type: ignore[union-attr]
            if theirs is not None and ours is not None and theirs != ours:
                self.last_error = SchemaMismatch(schema_mismatch_message(ours, theirs))
                self.fail(1002, self.last_error.message)
                return
            self._start_session(msg)  # type: ignore[arg-type]
        elif kind is MatchResult:
            self.room_id = msg.room_id  # type: ignore[union-attr]
            if msg.party_token is not None:  # type: ignore[union-attr]
                self.party_token = msg.party_token  # type: ignore[union-attr]
            if msg.url is not None:  # type: ignore[union-attr]
                # A2 redirect: repeat the request at url (join_room with the seat_token).
                self.redirect = msg  # type: ignore[assignment]
        elif kind is HelloAck:
            self.compact_granted = msg.compact  # type: ignore[union-attr]
            self.events_granted = msg.events  # type: ignore[union-attr]
        self.phase = TRANSITIONS.get((self.phase, kind), self.phase)
        self._deliver(msg)

    def reset_transport(self) -> None:
        """Forget the dropped socket, keep identity and seq: ready for hello() + resume()."""
        self.phase = ClientPhase.IDLE
        self.compact_granted = None
        self.session_key = None
        self._signer = None
        self._reset_outboxes()

    # ------------------------------------------------------------------------ internals

    def _now_ms(self) -> int:
        return max(0, int(self._clock() * 1000))

    def _start_session(self, accepted: JoinAccepted) -> None:
        self.session_key = accepted.session_key
        self._signer = InputSigner(accepted.session_key)
        self.room_id = accepted.room_id
        self.player_id = accepted.player_id
        self.resume_token = accepted.resume_token
        self.entity = accepted.entity
        self.tick_hz = accepted.tick_hz

    def _require(self, phases: frozenset[ClientPhase], action: str) -> None:
        if self.phase not in phases:
            raise InvalidState(f"cannot {action} in phase {self.phase.name}")

    def _queue(self, msg: ClientMessage) -> None:
        if len(self._writes) >= MAX_PENDING_MESSAGES:
            raise InvalidState(f"send queue full ({MAX_PENDING_MESSAGES}); drain data_to_send()")
        self._writes.append(encode(msg))
