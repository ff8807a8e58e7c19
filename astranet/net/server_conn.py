"""Sans-I/O server side of one client connection: bytes in, messages and bytes out.

The asyncio server is a thin shell around this class (websockets' ``Protocol`` style)::

    conn.receive_data(ws_message)          # one complete WebSocket message, bytes or str
    for msg in conn.messages_received():   # act: matchmaking, queue input, reply Pong...
        ...
        conn.send(reply)                   # encode + queue; JoinAccepted starts the session
    for data in conn.data_to_send():       # write each as one *binary* WebSocket message
        await ws.send(data)
    if (close := conn.close_expected()):   # then close with that code and reason
        await ws.close(*close)

What it enforces (WIRE.md rules):
  1. the first message must be ``Hello`` of version 1 (else a ``ProtocolError`` reply and
     close 1002), and when it carries a ``schema`` fingerprint, that of ``schema_fingerprint``
     (else ``schema_mismatch`` and close 1002); ``Hello`` is answered with ``HelloAck`` here
     and also surfaced, so the shell can cancel its handshake timer.
  3. ``InputFrame``\\ s come out already signature-checked (HMAC with the ``session_key`` of
     the ``JoinAccepted`` the shell sent) and replay-checked. ``sig_failure_policy="kick"``
     closes 1008; ``"warn"`` drops the frame and replies ``bad_signature``/``replay``.
  5. a token bucket (``astranet.net.ratelimit``) charges every message before it is decoded.
  6. undecodable, ill-typed, unknown-type, text and out-of-phase messages are dropped with a
     ``ProtocolError`` reply and a *strike*; more than ``max_malformed`` strikes in quick
     succession (strikes are forgiven at ``max_malformed`` per ``STRIKE_WINDOW_S``) closes
     1008 ``too many malformed messages``. A message over ``max_message_bytes`` closes 1009.
WIRE A1: ``Hello{compact: true}`` is granted when ``allow_compact`` (the default): HelloAck
then says ``compact: true`` and ``conn.compact`` is set, telling the shell to send Snapshots in
the compact envelope (``astranet.net.envelope``); other replies stay map envelopes. An
``InputFrame`` carrying ``ack`` comes out as that one message: the shell applies ``frame.ack``
as an ``Ack`` right after the frame (one dispatch per tick, not two; the frame was charged
once by the rate limit); if the frame is refused its ack goes with it.
WIRE A4: with an ``authenticate`` callable (the server's JWT check), ``Hello`` is answered only
once ``authenticate(hello.token or upgrade_token)`` returned; its result is ``conn.identity``.
If it raises ``Unauthorized`` the reply is ``ProtocolError{unauthorized}`` then close 1008 and
no ``HelloAck``. The callable owns its clock; nothing here reads one.
Out of phase means: ``InputFrame``/``Ack`` before ``JoinAccepted`` was sent, or
``FindOrCreate``/``JoinRoom``/``Resume`` after it, or while one is still being answered
(phase ``MATCHING``: it ends with ``JoinAccepted``, a refusal, or a redirecting
``MatchResult`` with a ``url``), or a second ``Hello``: ``bad_request``.
``Leave`` is surfaced and then the connection closes 1000 ``leave``: free the seat, then
close. Matchmaking refusals raised by decoding (``bad_request`` for party_size/game_mode,
``room_not_found`` for an impossible room id) are replied here with no strike.

Matchmaking refusals the shell decides (``unknown_region``, ``room_full``, ...) go out with
``conn.send_error(exc)``, which turns any ``astranet.errors.ProtocolError`` into the reply.

Once a close is decided, further input is ignored and ``send`` raises ``InvalidState``;
whatever was queued before (e.g. the ``expected_hello`` reply) is still in ``data_to_send``.
Counters for ``/metrics`` are in ``conn.stats``.

Benchmark: ``benchmarks/protocol.py`` ("server InputFrame path"): decode, verify, replay
check and rate limit of one frame.
"""

from __future__ import annotations

import enum
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from astranet.errors import (
    BadRequest,
    BadSignature,
    ExpectedHello,
    InvalidState,
    LocalProtocolError,
    MalformedMessage,
    PayloadTooLarge,
    ProtocolError,
    ProtocolMismatch,
    RateLimitExceeded,
    ReplayedInput,
    SchemaMismatch,
    Unauthorized,
    UnknownMessageType,
    schema_mismatch_message,
)
from astranet.net._connection import Connection
from astranet.net.limits import (
    MAX_ERROR_MESSAGE_CHARS,
    MAX_INPUT_SEQ_JUMP,
    MAX_MESSAGE_BYTES,
    MAX_PENDING_MESSAGES,
    PROTOCOL_VERSION,
)
from astranet.net.messages import (
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    Ack,
    ClientMessage,
    Command,
    ErrorMessage,
    Events,
    FindOrCreate,
    Hello,
    HelloAck,
    InputFrame,
    JoinAccepted,
    JoinRoom,
    Leave,
    MatchResult,
    Ping,
    Pong,
    RateLimited,
    Resume,
    ServerMessage,
    Snapshot,
    encode,
)
from astranet.net.messages import _decode as _decode_message
from astranet.net.ratelimit import Admission, Clock, FloodGuard, RateLimitConfig, TokenBucket
from astranet.net.signing import InputSigner, ReplayGuard, command_key, sign_command

__all__ = [
    "DEFAULT_MAX_MALFORMED",
    "STRIKE_WINDOW_S",
    "ConnectionStats",
    "OutOfPhase",
    "ServerConnection",
    "ServerPhase",
]

#: Strikes (malformed / unknown type / out of phase) tolerated in quick succession. A
#: correct client never earns one; ten lets a buggy-but-honest client log its errors.
DEFAULT_MAX_MALFORMED = 10
#: Strikes are forgiven at ``max_malformed`` per this many seconds (a leaky bucket), so a
#: long session with a rare bug is not closed, but a burst of garbage is.
STRIKE_WINDOW_S = 60.0


class SeqJump(BadRequest):
    """A4: a signed InputFrame whose seq is beyond MAX_INPUT_SEQ_JUMP (``bad_request``)."""


class OutOfPhase(BadRequest):
    """A well-formed message the current phase does not allow (``bad_request``, a strike)."""


class ServerPhase(enum.Enum):
    AWAIT_HELLO = "await_hello"
    LOBBY = "lobby"
    MATCHING = "matching"  # a FindOrCreate/JoinRoom/Resume is being answered
    IN_ROOM = "in_room"
    CLOSED = "closed"


_P = ServerPhase
# Members looked up once: through the enum class each costs ~70 ns, on the per-message path.
_IN_ROOM = ServerPhase.IN_ROOM
_ACCEPT = Admission.ACCEPT

#: Client messages each phase accepts (h11 READERS-style). Anything else is out of phase.
ACCEPTS: dict[ServerPhase, frozenset[type]] = {
    _P.AWAIT_HELLO: frozenset({Hello}),
    _P.LOBBY: frozenset({FindOrCreate, JoinRoom, Resume, Ping, Leave}),
    _P.MATCHING: frozenset({Ping, Leave}),  # one request at a time
    _P.IN_ROOM: frozenset({InputFrame, Ack, Ping, Leave, Command}),
    _P.CLOSED: frozenset(),
}
#: Server messages the shell (or this class) may send in each phase.
SENDS: dict[ServerPhase, frozenset[type]] = {
    _P.AWAIT_HELLO: frozenset({HelloAck, ErrorMessage, RateLimited}),
    _P.LOBBY: frozenset({MatchResult, JoinAccepted, Pong, ErrorMessage, RateLimited}),
    _P.MATCHING: frozenset({MatchResult, JoinAccepted, Pong, ErrorMessage, RateLimited}),
    _P.IN_ROOM: frozenset({Snapshot, Events, Pong, ErrorMessage, RateLimited}),
    _P.CLOSED: frozenset(),
}
#: Phase changes: (phase, message received or sent) -> next phase. Closing (any phase ->
#: CLOSED) happens through ``_close`` only.
TRANSITIONS: dict[tuple[ServerPhase, type], ServerPhase] = {
    (_P.AWAIT_HELLO, Hello): _P.LOBBY,
    (_P.LOBBY, FindOrCreate): _P.MATCHING,
    (_P.LOBBY, JoinRoom): _P.MATCHING,
    (_P.LOBBY, Resume): _P.MATCHING,
    (_P.LOBBY, JoinAccepted): _P.IN_ROOM,
    (_P.MATCHING, JoinAccepted): _P.IN_ROOM,
    (_P.MATCHING, ErrorMessage): _P.LOBBY,  # refused: the client may ask again
}
#: A ``MatchResult`` with a ``url`` is a redirect (A2): no JoinAccepted follows here, and the
#: connection is back in the lobby (the client goes to ``url``).

# Errors that count as a strike (rule 6); refusals like bad party_size do not.
_STRIKES = (MalformedMessage, UnknownMessageType, OutOfPhase, SeqJump)
# Closing errors that still get a ProtocolError reply first (rule 1 asks for one).
_REPLY_BEFORE_CLOSE = (ExpectedHello, ProtocolMismatch, SchemaMismatch, Unauthorized)


@dataclass(slots=True)
class ConnectionStats:
    """Plain counters the server's ``/metrics`` reads; never reset."""

    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0
    malformed: int = 0  # malformed + unknown_type + out-of-phase (the strikes)
    rate_limited: int = 0  # messages dropped by the token bucket
    signature_failures: int = 0
    replays: int = 0
    seq_jumps: int = 0  # A4: signed frames refused for a seq beyond the window
    inputs_accepted: int = 0


class ServerConnection(Connection[ClientMessage]):
    """Protocol state of one client, as seen by the server. See the module docstring."""

    CLOSED = ServerPhase.CLOSED

    def __init__(
        self,
        *,
        sig_failure_policy: Literal["kick", "warn"] = "kick",
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        clock: Clock = time.monotonic,
        rate_limit: RateLimitConfig = RateLimitConfig(),  # noqa: B008 - frozen, shared safely
        max_malformed: int = DEFAULT_MAX_MALFORMED,
        allow_compact: bool = True,
        schema_fingerprint: int | None = None,
        authenticate: Callable[[str | None], object] | None = None,
        upgrade_token: str | None = None,
    ) -> None:
        """``schema_fingerprint``: the game's ``Schema.fingerprint``; a ``Hello`` carrying
        another is refused (``None``: accept any)."""
        if sig_failure_policy not in ("kick", "warn"):
            raise LocalProtocolError(
                f"sig_failure_policy must be 'kick' or 'warn', got {sig_failure_policy!r}"
            )
        self.sig_failure_policy = sig_failure_policy
        #: Close code of a bad signature or a replay: 1008 under "kick", none under "warn".
        self._kick = 1008 if sig_failure_policy == "kick" else None
        self.max_message_bytes = max_message_bytes
        self.schema_fingerprint = schema_fingerprint
        super().__init__()
        self.phase: ServerPhase = ServerPhase.AWAIT_HELLO
        self.allow_compact = allow_compact
        #: True once a Hello asked for the compact envelope and it was granted (WIRE A1).
        self.compact = False
        #: True once a Hello asked for game events: the shell may send ``Events`` messages.
        self.events = False
        self.stats = ConnectionStats()
        self._authenticate = authenticate
        #: ``?token=`` of the upgrade request (the edge may set it once the upgrade is done).
        self.upgrade_token = upgrade_token
        #: What ``authenticate`` returned for this connection's Hello (None: anonymous).
        self.identity: object | None = None
        #: The last protocol error handled (for the shell's logs); ``None`` if none.
        self.last_error: ProtocolError | None = None
        self._flood = FloodGuard(rate_limit, clock)
        # Strikes drain a leaky bucket: empty means "too many in quick succession".
        self._strikes = TokenBucket(max_malformed / STRIKE_WINDOW_S, max_malformed, clock)
        self._signer: InputSigner | None = None
        self._guard = ReplayGuard()
        self._session_key: bytes | None = None
        self._command_key: bytes | None = None

    # ------------------------------------------------------------------ shell-facing API

    @property
    def session_key(self) -> bytes | None:
        return self._session_key

    @property
    def last_input_seq(self) -> int | None:
        """Highest InputFrame ``seq`` accepted in this session (pass it on to a resume)."""
        return self._guard.last_seq

    @property
    def can_send_snapshot(self) -> bool:
        """Whether a Snapshot may go out now (in a room and not closing)."""
        return self.phase is ServerPhase.IN_ROOM

    def count_sent(self, nbytes: int) -> None:
        """Count a message the shell sent without ``send`` (a pre-encoded Snapshot)."""
        self.stats.messages_out += 1
        self.stats.bytes_out += nbytes

    def receive_data(self, data: bytes | str) -> None:
        """Take one complete WebSocket message (``str`` = a text frame, which is malformed).

        Afterwards call ``messages_received()``, ``data_to_send()`` and ``close_expected()``.
        """
        msg = self._receive(data)
        if msg is not None and self._deliver(msg) and type(msg) is Leave:
            self.fail(1000, "leave")

    def receive(self, data: bytes | str) -> ClientMessage | None:
        """``receive_data`` for a shell that acts on each message at once: the validated
        message is returned instead of queued (None: refused, dropped or closing).

        A returned ``Leave`` has already decided the 1000 close. Afterwards call
        ``data_to_send()`` and ``close_expected()`` as after ``receive_data``.
        """
        msg = self._receive(data)
        if type(msg) is Leave:
            self.fail(1000, "leave")
        return msg

    def _receive(self, data: bytes | str) -> ClientMessage | None:
        if self._close is not None:
            return None
        stats = self.stats
        stats.messages_in += 1
        stats.bytes_in += len(data)
        admission = self._flood.admit()
        if admission is not _ACCEPT:
            stats.rate_limited += 1
            if admission is Admission.CLOSE:
                self._fail(RateLimitExceeded("rate limit exceeded"))
            elif admission is Admission.DROP_AND_REPLY:
                self._queue(RateLimited(self._flood.retry_after_ms()))
            return None
        try:
            try:
                # decode_client_message, without the call of its wrapper
                msg = _decode_message(
                    data, self.max_message_bytes, CLIENT_MESSAGES, SERVER_MESSAGES
                )
            except ProtocolError as exc:
                if self.phase is _P.AWAIT_HELLO and not isinstance(exc, PayloadTooLarge):
                    raise ExpectedHello("expected Hello") from exc
                raise
            if type(msg) is InputFrame and self.phase is _IN_ROOM:
                return self._receive_input(msg)  # the per-tick message: no table lookups
            return self._dispatch(msg)
        except ProtocolError as exc:
            self._fail(exc)
            return None

    def send(self, msg: ServerMessage, *, last_input_seq: int | None = None) -> None:
        """Queue ``msg``. Sending ``JoinAccepted`` starts the session.

        It installs ``msg.session_key`` for signature checks and restarts the replay guard at
        ``last_input_seq`` (``None``: any seq; on ``Resume`` pass the previous session's
        ``last_input_seq`` so older frames stay refused). Raises ``InvalidState`` when closed
        or when the phase does not allow ``msg`` (e.g. a Snapshot before JoinAccepted).
        """
        if self._close is not None:
            raise InvalidState(f"connection is closing ({self._close[0]}); cannot send")
        kind = type(msg)
        if kind not in SENDS[self.phase]:
            raise InvalidState(f"cannot send {kind.__name__} in phase {self.phase.name}")
        if kind is JoinAccepted:
            self._signer = InputSigner(msg.session_key)  # type: ignore[union-attr]
            self._session_key = msg.session_key  # type: ignore[union-attr]
            self._command_key = None
            self._guard = ReplayGuard(last_input_seq)
        elif last_input_seq is not None:
            raise LocalProtocolError("last_input_seq only applies to JoinAccepted")
        self._queue(msg)
        if kind is MatchResult and msg.url is not None:  # type: ignore[union-attr]
            self.phase = _P.LOBBY
        else:
            self.phase = TRANSITIONS.get((self.phase, kind), self.phase)

    def send_error(self, exc: ProtocolError) -> None:
        """Reply to a refused request with ``exc``'s wire code and message (truncated to fit).

        For the shell's matchmaking errors: ``except MatchmakingError as exc:
        conn.send_error(exc)``. If ``exc.close_code`` is set the connection then closes.
        Never a strike.
        """
        if self._close is not None:
            raise InvalidState(f"connection is closing ({self._close[0]}); cannot send")
        self._queue(ErrorMessage(exc.code, exc.message[:MAX_ERROR_MESSAGE_CHARS]))
        if exc.close_code is not None:
            self.fail(exc.close_code, exc.message)
        elif self.phase is _P.MATCHING:
            self.phase = _P.LOBBY  # the request is over; the client may ask again

    # ------------------------------------------------------------------------ internals

    def _dispatch(self, msg: ClientMessage) -> ClientMessage:
        kind = type(msg)
        if kind not in ACCEPTS[self.phase]:
            if self.phase is ServerPhase.AWAIT_HELLO:
                raise ExpectedHello("expected Hello")
            raise OutOfPhase(f"{kind.TYPE} is not allowed in phase {self.phase.name}")
        if kind is InputFrame:
            return self._receive_input(msg)  # type: ignore[arg-type]
        if kind is Command:
            self._check_command(msg)  # type: ignore[arg-type]
        elif kind is Hello:
            self._answer_hello(msg)  # type: ignore[arg-type]
        self.phase = TRANSITIONS.get((self.phase, kind), self.phase)
        return msg

    def _answer_hello(self, msg: Hello) -> None:
        if msg.protocol != PROTOCOL_VERSION:
            raise ProtocolMismatch(
                f"protocol mismatch: client={msg.protocol}, server={PROTOCOL_VERSION}"
            )
        theirs, ours = msg.schema, self.schema_fingerprint
        if theirs is not None and ours is not None and theirs != ours:
            raise SchemaMismatch(schema_mismatch_message(theirs, ours))
        if self._authenticate is not None:
            token = msg.token if msg.token is not None else self.upgrade_token
            self.identity = self._authenticate(token)  # raises Unauthorized
        granted = None
        if msg.compact:
            granted = self.compact = self.allow_compact
        events = None
        if msg.events:
            events = self.events = True  # the event channel (docs/protocol.md, Events)
        self._queue(HelloAck(PROTOCOL_VERSION, granted, events))

    def _check_command(self, command: Command) -> None:
        """Signature (under the command key) and the channel: replays are the host's job
        (its guard lives on the seat, so it survives Resume)."""
        if not self.events:
            raise OutOfPhase("Command needs the event channel (Hello.events)")
        assert self._session_key is not None  # IN_ROOM implies a JoinAccepted was sent
        if self._command_key is None:
            self._command_key = command_key(self._session_key)
        expected = sign_command(self._command_key, command.seq, command.type, command.data)
        if not hmac.compare_digest(expected, command.sig):
            self.stats.signature_failures += 1
            raise BadSignature("command signature verification failed", close_code=self._kick)

    def _receive_input(self, frame: InputFrame) -> InputFrame:
        """An InputFrame in a room: verified, then returned (its ``ack`` rides along)."""
        # Signature first, so an unsigned frame cannot probe the replay guard.
        assert self._signer is not None  # IN_ROOM implies a JoinAccepted was sent
        seq = frame.seq
        view = None if frame.view_tick is None else frame.view
        if not self._signer.verify(seq, frame.tick_ms, frame.input_blob, frame.sig, view):
            self.stats.signature_failures += 1
            raise BadSignature("input frame signature verification failed", close_code=self._kick)
        guard = self._guard
        last = guard.last_seq
        if last is not None and seq <= last:
            self.stats.replays += 1
            raise ReplayedInput("input frame replayed", close_code=self._kick)
        if seq - (last or 0) > MAX_INPUT_SEQ_JUMP:
            # Refused unapplied (the guard keeps its place): a strike, not a lock-out.
            self.stats.seq_jumps += 1
            raise SeqJump(f"input seq {seq} jumps more than {MAX_INPUT_SEQ_JUMP} past {last or 0}")
        guard.last_seq = seq  # ReplayGuard.accept without checking freshness a second time
        self.stats.inputs_accepted += 1
        return frame

    def _fail(self, exc: ProtocolError) -> None:
        """The one place a protocol error becomes a reply, a strike and/or a close."""
        self.last_error = exc
        close_code = exc.close_code
        if close_code is None or isinstance(exc, _REPLY_BEFORE_CLOSE):
            self._queue(ErrorMessage(exc.code, exc.message[:MAX_ERROR_MESSAGE_CHARS]))
        if close_code is not None:
            self.fail(close_code, exc.message)
        elif isinstance(exc, _STRIKES):
            self.stats.malformed += 1
            if not self._strikes.try_take():
                self.fail(1008, "too many malformed messages")

    def _queue(self, msg: ServerMessage) -> None:
        if len(self._writes) >= MAX_PENDING_MESSAGES:
            self.fail(1011, "send queue overflow: shell is not draining")
            return
        data = encode(msg)
        self._writes.append(data)
        self.stats.messages_out += 1
        self.stats.bytes_out += len(data)
