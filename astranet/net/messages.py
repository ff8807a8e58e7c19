"""Wire messages of protocol v1: one frozen, slotted dataclass per WIRE.md message, plus codec.

Operations: build a message (validated in ``__post_init__``; a bad value raises
``LocalProtocolError``), ``encode(msg) -> bytes``, and the direction-specific decoders
``decode_client_message`` (server side) and ``decode_server_message`` (client side).

Goals: decoding is the server's first line of defence, so it
  * refuses input over ``max_bytes`` before parsing (``PayloadTooLarge``);
  * lets msgpack allocate no more than the input justifies (every ``max_*_len`` is bounded by
    the input length, so ``b"\\xdf\\xff\\xff\\xff\\xff"`` cannot reserve 4 G map slots);
  * checks exact types (a bool is not an int, bin is not str) and every range and length;
  * lets only ``astranet.errors`` types escape: ``MalformedMessage``, ``UnknownMessageType``,
    ``PayloadTooLarge``, and for three *well-formed but refused* requests the reply the server
    owes (below);
  * never returns a half-built object.
Encoding is deterministic: ``t`` first, then every field in declaration order, optional
fields as ``nil``, ints in msgpack's smallest width. Unknown keys on input are ignored.
Fields added after v1 (WIRE additions, listed in a class's ``ADDED``) are *omitted* when
``None``, so a message that does not use them encodes to exactly its v1 bytes.

WIRE A1: ``InputFrame.ack`` folds an ``Ack`` into the frame; ``Hello.compact`` asks for the
compact Snapshot envelope and ``HelloAck.compact`` says whether it was granted. The compact
envelope itself (and the splicing of per-client ``last_input_seq`` into either envelope) is
:mod:`astranet.net.envelope`; ``decode_server_message`` accepts both envelopes.

Refused-but-well-formed requests (WIRE rule 2 asks for these codes, not ``malformed``):
``FindOrCreate`` with ``party_size`` outside 1-4 or a ``game_mode`` outside
``[A-Za-z0-9_-]{1,32}`` raises ``BadRequest``; ``JoinRoom`` whose ``room_id`` is not 8
``[A-Za-z0-9]`` raises ``RoomNotFound("room ID does not exist")`` (no such room can exist);
``Resume`` with such a ``room_id`` raises ``ResumeDenied``. ``ServerConnection`` replies with
those codes and counts no strike. Building such a message locally raises
``LocalProtocolError`` — test code that wants to send one must pack the map by hand.

Limits: see ``astranet.net.limits`` (message 64 KiB, input_blob 8 KiB, strings 64 chars...).
Benchmark: ``benchmarks/protocol.py`` (encode+decode InputFrame and a 1 KiB Snapshot).
Don't subclass the message classes.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, TypeVar

import msgpack

from astranet.errors import (
    BadRequest,
    LocalProtocolError,
    MalformedMessage,
    PayloadTooLarge,
    ResumeDenied,
    RoomNotFound,
    UnknownMessageType,
)
from astranet.net import _fields as f
from astranet.net.envelope import is_compact, parse_compact
from astranet.net.limits import (
    GAME_MODE_MAX_CHARS,
    MAX_AUTH_TOKEN_CHARS,
    MAX_ERROR_CODE_CHARS,
    MAX_ERROR_MESSAGE_CHARS,
    MAX_INPUT_BLOB_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_PARTY_TOKEN_BYTES,
    MAX_PLAYER_ID_CHARS,
    MAX_REGION_CHARS,
    MAX_RESUME_TOKEN_BYTES,
    MAX_SEAT_TOKEN_BYTES,
    MAX_SNAPSHOT_PAYLOAD_BYTES,
    MAX_TICK_HZ,
    MAX_URL_CHARS,
    PARTY_SIZE_MAX,
    PARTY_SIZE_MIN,
    SESSION_KEY_BYTES,
    SIG_BYTES,
)

VIEW_FRAC_MAX = 0xFFFF  # view_frac counts 1/65536 of a tick (u16)

# Rules several fields share (the rest are spelled out at their field).
OPT_U32 = f.U32.or_nil()
OPT_BOOL = f.BOOL.or_nil()
SIG = f.exact_blob(SIG_BYTES)
PLAYER_ID = f.text(MAX_PLAYER_ID_CHARS, min_chars=1)
RESUME_TOKEN = f.blob(MAX_RESUME_TOKEN_BYTES)
SEAT_TOKEN = f.blob(MAX_SEAT_TOKEN_BYTES).or_nil()
PARTY_TOKEN = f.blob(MAX_PARTY_TOKEN_BYTES).or_nil()
EVENT_TYPE = f.text(64, min_chars=1)
#: Any str: whether it is a room id (8 chars of [A-Za-z0-9]) is the class's check, since a
#: client's impossible room id is refused with ``room_not_found``, not as malformed.
ANY_ROOM_ID = f.text(MAX_MESSAGE_BYTES)

__all__ = [
    "CLIENT_MESSAGES",
    "SERVER_MESSAGES",
    "Ack",
    "ClientMessage",
    "Command",
    "ErrorMessage",
    "Events",
    "FindOrCreate",
    "Hello",
    "HelloAck",
    "InputFrame",
    "JoinAccepted",
    "JoinRoom",
    "Leave",
    "MatchResult",
    "Message",
    "Ping",
    "Pong",
    "RateLimited",
    "Resume",
    "ServerMessage",
    "Snapshot",
    "decode_client_message",
    "decode_server_message",
    "encode",
]


class Message:
    """Base of every wire message. ``TYPE`` is the wire ``t``; ``FIELDS`` the wire keys.

    Each field is annotated with its :class:`~astranet.net._fields.Rule`
    (``seq: Annotated[int, U32]``); ``RULES`` is that table in field order. A class whose
    fields relate to each other or whose values are refused with a reply of their own
    (``bad_request``, ``room_not_found``) adds those checks in ``_check_values``.
    """

    __slots__ = ()
    TYPE: ClassVar[str]
    FIELDS: ClassVar[tuple[str, ...]]
    #: Fields of a WIRE addition: left out of the map when None (v1 bytes unchanged).
    ADDED: ClassVar[frozenset[str]] = frozenset()
    RULES: ClassVar[tuple[tuple[str, f.Rule], ...]]
    #: ``RULES`` compiled: the message built from a decoded map, or None if a rule fails.
    _accept: ClassVar[Callable[[dict[str, Any]], Any]]
    #: ``RULES`` compiled for an instance: True when every field keeps its rule.
    _fits: ClassVar[Callable[[Any], bool]]
    _HAS_VALUE_CHECKS: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not self._fits():
            f.check_rules(self.RULES, self._get, LocalProtocolError)
        if self._HAS_VALUE_CHECKS:
            self._check_values(remote=False)

    def _get(self, name: str) -> Any:
        return getattr(self, name)

    def _check_values(self, remote: bool) -> None:
        """Checks beyond each field's own rule; raise ``MalformedMessage`` (or a refusal) if
        ``remote``, else ``LocalProtocolError``."""

    def to_map(self) -> dict[str, Any]:
        """The msgpack map of this message: ``t`` first, then fields in order."""
        wire: dict[str, Any] = {"t": self.TYPE}
        added = self.ADDED
        for name in self.FIELDS:
            value = getattr(self, name)
            if value is None and name in added:
                continue
            wire[name] = value
        return wire

    @classmethod
    def from_map(cls: type[_M], wire: dict[str, Any]) -> _M:
        """Build from a decoded map whose ``t`` already selected ``cls``; absent == nil."""
        msg = cls._accept(wire)
        if msg is None:
            # The fast path only says "no": the table says which field and why.
            f.check_rules(cls.RULES, wire.get, MalformedMessage)
            raise AssertionError(f"{cls.TYPE}: acceptor and rules disagree on {wire!r}")
        if cls._HAS_VALUE_CHECKS:
            msg._check_values(remote=True)
        return msg  # type: ignore[no-any-return]


_M = TypeVar("_M", bound=Message)

CLIENT_MESSAGES: dict[str, type[Message]] = {}
SERVER_MESSAGES: dict[str, type[Message]] = {}


def _message(
    t: str, registry: dict[str, type[Message]], *, added: tuple[str, ...] = ()
) -> Callable[[type[_M]], type[_M]]:
    """Make a frozen slotted dataclass, name its wire type, compile its rule table and
    register it (h11 READERS).

    ``added`` names the optional fields of WIRE additions (omitted from the map when None).
    """

    def wrap(cls: type[_M]) -> type[_M]:
        built = dataclasses.dataclass(frozen=True, slots=True)(cls)
        built.TYPE = t
        built.FIELDS = tuple(field.name for field in dataclasses.fields(built))
        built.ADDED = frozenset(added)
        assert set(built.FIELDS) >= built.ADDED, f"{t}: unknown added fields {added}"
        hints = typing.get_type_hints(built, include_extras=True)
        built.RULES = tuple((name, _rule_of(t, name, hints[name])) for name in built.FIELDS)
        built._accept = staticmethod(f.compile_acceptor(built, built.RULES))  # type: ignore[assignment]
        built._fits = f.compile_fits(built, built.RULES)  # type: ignore[assignment]
        built._HAS_VALUE_CHECKS = built._check_values is not Message._check_values
        registry[t] = built
        return built

    return wrap


def _rule_of(t: str, name: str, hint: Any) -> f.Rule:
    rules = [extra for extra in getattr(hint, "__metadata__", ()) if isinstance(extra, f.Rule)]
    assert len(rules) == 1, f"{t}.{name} needs one Rule in Annotated[...]"
    return rules[0]


def _refusal(remote: bool, refusal: f.ErrorClass) -> f.ErrorClass:
    """What a well-formed but refused value raises: the reply's error from a peer."""
    return refusal if remote else LocalProtocolError


def _err(remote: bool) -> f.ErrorClass:
    return MalformedMessage if remote else LocalProtocolError


_ROOM_ID_TEXT = "room_id must be 8 chars of [A-Za-z0-9], got "

# --------------------------------------------------------------------- client -> server


@_message("Hello", CLIENT_MESSAGES, added=("compact", "token", "schema", "events"))
class Hello(Message):
    # Any u32: a client of another version must decode fine and get ``protocol_mismatch``.
    protocol: Annotated[int, f.U32]
    #: WIRE A1: True asks for the compact Snapshot envelope (docs/protocol.md).
    compact: Annotated[bool | None, OPT_BOOL] = None
    #: WIRE A4: a JWT naming the player (required when the server has --auth-jwt-*).
    token: Annotated[str | None, f.text(MAX_AUTH_TOKEN_CHARS).or_nil()] = None
    #: The client's schema fingerprint (``Schema.fingerprint``); nil: do not check.
    schema: Annotated[int | None, OPT_U32] = None
    #: True asks for reliable game events (``Events`` messages, docs/protocol.md).
    events: Annotated[bool | None, OPT_BOOL] = None


@_message("FindOrCreate", CLIENT_MESSAGES)
class FindOrCreate(Message):
    # A peer's over-long region is still just a region this server does not serve: the
    # server answers unknown_region naming its regions (rule 2), not malformed.
    region: Annotated[str, f.text(MAX_MESSAGE_BYTES)]
    game_mode: Annotated[str, f.text(MAX_MESSAGE_BYTES)]
    party_size: Annotated[int, f.ANY_INT] = 1

    def _check_values(self, remote: bool) -> None:
        if not remote and len(self.region) > MAX_REGION_CHARS:
            raise LocalProtocolError(
                f"region must be at most {MAX_REGION_CHARS} chars, got {f.preview(self.region)}"
            )
        refuse = _refusal(remote, BadRequest)
        if not f.is_game_mode(self.game_mode):
            raise refuse(
                f"game_mode must be 1-{GAME_MODE_MAX_CHARS} chars of [A-Za-z0-9_-], "
                f"got {f.preview(self.game_mode)}"
            )
        if not PARTY_SIZE_MIN <= self.party_size <= PARTY_SIZE_MAX:
            raise refuse(
                f"party_size must be {PARTY_SIZE_MIN}-{PARTY_SIZE_MAX}, got {self.party_size}"
            )


@_message("JoinRoom", CLIENT_MESSAGES, added=("party_token",))
class JoinRoom(Message):
    room_id: Annotated[str, ANY_ROOM_ID]
    seat_token: Annotated[bytes | None, SEAT_TOKEN] = None  # A2: from a redirecting MatchResult
    party_token: Annotated[bytes | None, PARTY_TOKEN] = None  # A4: the party leader's

    def _check_values(self, remote: bool) -> None:
        if not f.is_room_id(self.room_id):
            if remote:
                raise RoomNotFound("room ID does not exist")
            raise LocalProtocolError(_ROOM_ID_TEXT + f.preview(self.room_id))


@_message("Resume", CLIENT_MESSAGES)
class Resume(Message):
    room_id: Annotated[str, ANY_ROOM_ID]
    player_id: Annotated[str, PLAYER_ID]
    resume_token: Annotated[bytes, RESUME_TOKEN]

    def _check_values(self, remote: bool) -> None:
        if not f.is_room_id(self.room_id):
            if remote:
                raise ResumeDenied("resume denied: room ID does not exist")
            raise LocalProtocolError(_ROOM_ID_TEXT + f.preview(self.room_id))


@_message("InputFrame", CLIENT_MESSAGES, added=("ack", "view_tick", "view_frac"))
class InputFrame(Message):
    seq: Annotated[int, f.U32]
    tick_ms: Annotated[int, f.U64]
    input_blob: Annotated[bytes, f.blob(MAX_INPUT_BLOB_BYTES)]
    sig: Annotated[bytes, SIG]
    #: WIRE A1: same effect as an ``Ack{snapshot_id: ack}`` right after this frame (not signed).
    ack: Annotated[int | None, OPT_U32] = None
    #: Lag compensation (optional, signed): the server tick the client was rendering remote
    #: entities at, and the fraction of a tick beyond it in 1/65536 (docs/protocol.md).
    view_tick: Annotated[int | None, f.U64.or_nil()] = None
    view_frac: Annotated[int | None, f.int_in(0, VIEW_FRAC_MAX).or_nil(requires="view_tick")] = None

    @property
    def view(self) -> tuple[int, int] | None:
        """``(view_tick, view_frac)`` when the frame states a view, else None."""
        if self.view_tick is None:
            return None
        return self.view_tick, self.view_frac or 0


@_message("Command", CLIENT_MESSAGES)
class Command(Message):
    """A signed game command (chat, "use item"...), sent only once ``HelloAck.events`` was
    granted; the game's ``Game.on_command`` hook validates it (docs/protocol.md)."""

    seq: Annotated[int, f.U32]
    type: Annotated[str, EVENT_TYPE]
    data: Annotated[bytes, f.blob(1024)]
    sig: Annotated[bytes, SIG]


@_message("Ack", CLIENT_MESSAGES)
class Ack(Message):
    snapshot_id: Annotated[int, f.U32]


@_message("Ping", CLIENT_MESSAGES)
class Ping(Message):
    nonce: Annotated[int, f.U64]
    client_time_ms: Annotated[int, f.U64]


@_message("Leave", CLIENT_MESSAGES)
class Leave(Message):
    pass


# --------------------------------------------------------------------- server -> client


@_message("HelloAck", SERVER_MESSAGES, added=("compact", "events"))
class HelloAck(Message):
    protocol: Annotated[int, f.U32]
    #: WIRE A1: whether the compact envelope asked for in ``Hello`` was granted; None (absent)
    #: when the client did not ask.
    compact: Annotated[bool | None, OPT_BOOL] = None
    #: Whether the event channel asked for in ``Hello`` was granted; None when not asked.
    events: Annotated[bool | None, OPT_BOOL] = None


@_message("MatchResult", SERVER_MESSAGES, added=("party_token",))
class MatchResult(Message):
    room_id: Annotated[str, ANY_ROOM_ID]
    #: A2: the room lives on the node at url (a redirect)
    url: Annotated[str | None, f.text(MAX_URL_CHARS, min_chars=1).or_nil()] = None
    seat_token: Annotated[bytes | None, SEAT_TOKEN] = None  # A2: the seat held there for 15 s
    #: A4: opens the party's held seats (party_size > 1)
    party_token: Annotated[bytes | None, PARTY_TOKEN] = None

    def _check_values(self, remote: bool) -> None:
        err = _err(remote)
        if not f.is_room_id(self.room_id):
            raise err(_ROOM_ID_TEXT + f.preview(self.room_id))
        if self.url is not None and not self.url.startswith(("ws://", "wss://")):
            raise err(f"url must be a ws:// or wss:// URL, got {f.preview(self.url)}")


@_message("JoinAccepted", SERVER_MESSAGES, added=("schema",))
class JoinAccepted(Message):
    room_id: Annotated[str, ANY_ROOM_ID]
    player_id: Annotated[str, PLAYER_ID]
    tick_hz: Annotated[int, f.int_in(1, MAX_TICK_HZ)]
    session_key: Annotated[bytes, f.exact_blob(SESSION_KEY_BYTES)]
    resume_token: Annotated[bytes, RESUME_TOKEN]
    entity: Annotated[int | None, OPT_U32] = None
    #: The server's schema fingerprint (``Schema.fingerprint``); nil from an older server.
    schema: Annotated[int | None, OPT_U32] = None

    def _check_values(self, remote: bool) -> None:
        if not f.is_room_id(self.room_id):
            raise _err(remote)(_ROOM_ID_TEXT + f.preview(self.room_id))


@_message("Snapshot", SERVER_MESSAGES)
class Snapshot(Message):
    id: Annotated[int, f.U32]
    server_tick: Annotated[int, f.U64]
    base_id: Annotated[int | None, OPT_U32]
    compressed: Annotated[bool, f.BOOL]
    payload: Annotated[bytes, f.blob(MAX_SNAPSHOT_PAYLOAD_BYTES)]
    last_input_seq: Annotated[int | None, OPT_U32] = None


@_message("Pong", SERVER_MESSAGES)
class Pong(Message):
    nonce: Annotated[int, f.U64]
    client_time_ms: Annotated[int, f.U64]
    server_time_ms: Annotated[int, f.U64]
    server_tick: Annotated[int, f.U64]


@_message("RateLimited", SERVER_MESSAGES)
class RateLimited(Message):
    retry_after_ms: Annotated[int, f.U32]


@_message("ProtocolError", SERVER_MESSAGES)
class ErrorMessage(Message):
    """The wire ``ProtocolError`` reply (named apart from the exception class)."""

    code: Annotated[str, f.text(MAX_ERROR_CODE_CHARS, min_chars=1)]
    message: Annotated[str, f.text(MAX_ERROR_MESSAGE_CHARS)] = ""


#: One event of ``Events``: ``[server_tick, type, data]``.
_EVENT_RULES = (("server_tick", f.U64), ("type", EVENT_TYPE), ("data", f.blob(4096)))


@_message("Events", SERVER_MESSAGES)
class Events(Message):
    """Reliable game events (only to a client whose ``Hello`` asked): ``events[i]`` has seq
    ``first_seq + i`` and is ``[server_tick u64, type str(1..64), data bin(<=4096)]``."""

    first_seq: Annotated[int, f.U32]
    events: Annotated[tuple[tuple[int, str, bytes], ...], f.NESTED]

    def _check_values(self, remote: bool) -> None:
        err = _err(remote)
        if type(self.events) not in (tuple, list) or not 1 <= len(self.events) <= 256:
            raise err("events must be an array of 1-256 events")
        for event in self.events:
            if type(event) not in (tuple, list) or len(event) != 3:
                raise err("each event must be [server_tick, type, data]")
            values = dict(zip(("server_tick", "type", "data"), event, strict=True))
            f.check_rules(_EVENT_RULES, values.get, err)
        if self.first_seq + len(self.events) - 1 > 0xFFFFFFFF:
            raise err("event seq past u32")


ClientMessage = Hello | FindOrCreate | JoinRoom | Resume | InputFrame | Ack | Ping | Leave | Command
ServerMessage = (
    HelloAck | MatchResult | JoinAccepted | Snapshot | Pong | RateLimited | ErrorMessage | Events
)

# ----------------------------------------------------------------------------- codec

#: Every key some message defines: a map with only these has only str keys.
_WIRE_KEYS = frozenset(
    [
        "t",
        *(
            name
            for cls in (*CLIENT_MESSAGES.values(), *SERVER_MESSAGES.values())
            for name in cls.FIELDS
        ),
    ]
)

# msgpack's own failures: ExtraData/FormatError/StackError/"incomplete input" are all
# ValueError subclasses; UnpackException covers the rest of its tree.
_MSGPACK_ERRORS = (ValueError, TypeError, OverflowError, msgpack.UnpackException)


def encode(msg: Message) -> bytes:
    """Serialize ``msg``; deterministic (same message, same bytes)."""
    return msgpack.packb(msg.to_map(), use_bin_type=True)


def _decode(
    data: bytes | bytearray | memoryview | str,
    max_bytes: int,
    registry: dict[str, type[Message]],
    other: dict[str, type[Message]],
) -> Message:
    if isinstance(data, str):
        raise MalformedMessage("text frames are not allowed; send binary messages")
    size = len(data)
    if size > max_bytes:
        raise PayloadTooLarge(f"message of {size} bytes exceeds the {max_bytes}-byte limit")
    try:
        # Every container/str/bin length is capped by the input size, so nothing declared
        # larger than the bytes we actually hold can be allocated: msgpack >= 1.0 derives
        # max_str_len, max_bin_len, max_array_len, max_ext_len (size) and max_map_len
        # (size // 2) from the input itself (tests/net/test_fuzz.py holds it to that).
        wire = msgpack.unpackb(data, use_list=False)  # raw=False, strict_map_key: defaults
    except _MSGPACK_ERRORS as exc:
        raise MalformedMessage(f"undecodable msgpack: {type(exc).__name__}") from exc
    if type(wire) is not dict:
        raise MalformedMessage(f"message must be a msgpack map, got {type(wire).__name__}")
    if not wire.keys() <= _WIRE_KEYS:  # known keys are all str: no need to look at each
        for key in wire:
            if type(key) is not str:
                raise MalformedMessage("message map keys must be str")
    t = wire.get("t")
    if type(t) is not str:
        raise MalformedMessage(f"message needs a str 't', got {f.preview(t)}")
    cls = registry.get(t)
    if cls is None:
        where = " in this direction" if t in other else ""
        raise UnknownMessageType(f"unknown message type {f.preview(t)}{where}")
    msg = cls._accept(wire)
    if msg is not None and not cls._HAS_VALUE_CHECKS:
        return msg
    return cls.from_map(wire)  # the error of the first broken rule, or the value checks


def decode_client_message(
    data: bytes | bytearray | memoryview | str, *, max_bytes: int = MAX_MESSAGE_BYTES
) -> ClientMessage:
    """Decode one client->server message (what the server receives)."""
    return _decode(data, max_bytes, CLIENT_MESSAGES, SERVER_MESSAGES)  # type: ignore[return-value]


def decode_server_message(
    data: bytes | bytearray | memoryview | str, *, max_bytes: int = MAX_MESSAGE_BYTES
) -> ServerMessage:
    """Decode one server->client message (what the client receives); both envelopes (A1)."""
    if not isinstance(data, str) and is_compact(data):
        if len(data) > max_bytes:
            raise PayloadTooLarge(
                f"message of {len(data)} bytes exceeds the {max_bytes}-byte limit"
            )
        fields = zip(Snapshot.FIELDS, parse_compact(bytes(data)), strict=True)
        return Snapshot.from_map(dict(fields))
    return _decode(data, max_bytes, SERVER_MESSAGES, CLIENT_MESSAGES)  # type: ignore[return-value]
