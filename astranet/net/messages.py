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
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

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
    """Base of every wire message. ``TYPE`` is the wire ``t``; ``FIELDS`` the wire keys."""

    __slots__ = ()
    TYPE: ClassVar[str]
    FIELDS: ClassVar[tuple[str, ...]]
    #: Fields of a WIRE addition: left out of the map when None (v1 bytes unchanged).
    ADDED: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        self._check(remote=False)

    def _check(self, remote: bool) -> None:
        """Validate every field; raise ``MalformedMessage`` if ``remote`` else local."""
        raise NotImplementedError

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
        msg = object.__new__(cls)
        for name in cls.FIELDS:
            # Frozen dataclass: assign through object, then validate as remote input.
            object.__setattr__(msg, name, wire.get(name))
        msg._check(remote=True)
        return msg


_M = TypeVar("_M", bound=Message)

CLIENT_MESSAGES: dict[str, type[Message]] = {}
SERVER_MESSAGES: dict[str, type[Message]] = {}


def _message(
    t: str, registry: dict[str, type[Message]], *, added: tuple[str, ...] = ()
) -> Callable[[type[_M]], type[_M]]:
    """Make a frozen slotted dataclass, name its wire type, and register it (h11 READERS).

    ``added`` names the optional fields of WIRE additions (omitted from the map when None).
    """

    def wrap(cls: type[_M]) -> type[_M]:
        built = dataclasses.dataclass(frozen=True, slots=True)(cls)
        built.TYPE = t
        built.FIELDS = tuple(field.name for field in dataclasses.fields(built))
        built.ADDED = frozenset(added)
        assert set(built.FIELDS) >= built.ADDED, f"{t}: unknown added fields {added}"
        registry[t] = built
        return built

    return wrap


def _err(remote: bool) -> f.ErrorClass:
    return MalformedMessage if remote else LocalProtocolError


# --------------------------------------------------------------------- client -> server


@_message("Hello", CLIENT_MESSAGES, added=("compact", "token", "schema", "events"))
class Hello(Message):
    # Any u32: a client of another version must decode fine and get ``protocol_mismatch``.
    protocol: int
    #: WIRE A1: True asks for the compact Snapshot envelope (docs/protocol.md).
    compact: bool | None = None
    #: WIRE A4: a JWT naming the player (required when the server has --auth-jwt-*).
    token: str | None = None
    #: The client's schema fingerprint (``Schema.fingerprint``); nil: do not check.
    schema: int | None = None
    #: True asks for reliable game events (``Events`` messages, docs/protocol.md).
    events: bool | None = None

    def _check(self, remote: bool) -> None:
        err = _err(remote)
        f.check_u32("protocol", self.protocol, err)
        f.check_optional_bool("compact", self.compact, err)
        f.check_optional_bool("events", self.events, err)
        if self.token is not None:
            f.check_str("token", self.token, MAX_AUTH_TOKEN_CHARS, err)
        f.check_optional_u32("schema", self.schema, err)


@_message("FindOrCreate", CLIENT_MESSAGES)
class FindOrCreate(Message):
    region: str
    game_mode: str
    party_size: int = 1

    def _check(self, remote: bool) -> None:
        err = _err(remote)
        # A peer's over-long region is still just a region this server does not serve: the
        # server answers unknown_region naming its regions (rule 2), not malformed.
        f.check_str("region", self.region, MAX_MESSAGE_BYTES if remote else MAX_REGION_CHARS, err)
        f.check_str("game_mode", self.game_mode, MAX_MESSAGE_BYTES, err)
        f.check_any_int("party_size", self.party_size, err)
        refuse = BadRequest if remote else LocalProtocolError
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
    room_id: str
    seat_token: bytes | None = None  # A2: from a redirecting MatchResult
    party_token: bytes | None = None  # A4: from the party leader's MatchResult

    def _check(self, remote: bool) -> None:
        f.check_str("room_id", self.room_id, MAX_MESSAGE_BYTES, _err(remote))
        if self.seat_token is not None:
            f.check_bytes("seat_token", self.seat_token, MAX_SEAT_TOKEN_BYTES, _err(remote))
        if self.party_token is not None:
            f.check_bytes("party_token", self.party_token, MAX_PARTY_TOKEN_BYTES, _err(remote))
        if not f.is_room_id(self.room_id):
            if remote:
                raise RoomNotFound("room ID does not exist")
            raise LocalProtocolError(
                f"room_id must be 8 chars of [A-Za-z0-9], got {f.preview(self.room_id)}"
            )


@_message("Resume", CLIENT_MESSAGES)
class Resume(Message):
    room_id: str
    player_id: str
    resume_token: bytes

    def _check(self, remote: bool) -> None:
        err = _err(remote)
        f.check_str("room_id", self.room_id, MAX_MESSAGE_BYTES, err)
        f.check_str("player_id", self.player_id, MAX_PLAYER_ID_CHARS, err, min_chars=1)
        f.check_bytes("resume_token", self.resume_token, MAX_RESUME_TOKEN_BYTES, err)
        if not f.is_room_id(self.room_id):
            if remote:
                raise ResumeDenied("resume denied: room ID does not exist")
            raise LocalProtocolError(
                f"room_id must be 8 chars of [A-Za-z0-9], got {f.preview(self.room_id)}"
            )


@_message("InputFrame", CLIENT_MESSAGES, added=("ack", "view_tick", "view_frac"))
class InputFrame(Message):
    seq: int
    tick_ms: int
    input_blob: bytes
    sig: bytes
    #: WIRE A1: same effect as an ``Ack{snapshot_id: ack}`` right after this frame (not signed).
    ack: int | None = None
    #: Lag compensation (optional, signed): the server tick the client was rendering remote
    #: entities at, and the fraction of a tick beyond it in 1/65536 (docs/protocol.md).
    view_tick: int | None = None
    view_frac: int | None = None

    def _check(self, remote: bool) -> None:
        err = _err(remote)
        f.check_u32("seq", self.seq, err)
        f.check_u64("tick_ms", self.tick_ms, err)
        f.check_bytes("input_blob", self.input_blob, MAX_INPUT_BLOB_BYTES, err)
        f.check_exact_bytes("sig", self.sig, SIG_BYTES, err)
        f.check_optional_u32("ack", self.ack, err)
        if self.view_tick is not None:
            f.check_u64("view_tick", self.view_tick, err)
        if self.view_frac is not None:
            f.check_int("view_frac", self.view_frac, 0, VIEW_FRAC_MAX, err)
            if self.view_tick is None:
                raise err("view_frac without view_tick")

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

    seq: int
    type: str
    data: bytes
    sig: bytes

    def _check(self, remote: bool) -> None:
        err = _err(remote)
        f.check_u32("seq", self.seq, err)
        f.check_str("type", self.type, 64, err, min_chars=1)
        f.check_bytes("data", self.data, 1024, err)
        f.check_exact_bytes("sig", self.sig, SIG_BYTES, err)


@_message("Ack", CLIENT_MESSAGES)
class Ack(Message):
    snapshot_id: int

    def _check(self, remote: bool) -> None:
        f.check_u32("snapshot_id", self.snapshot_id, _err(remote))


@_message("Ping", CLIENT_MESSAGES)
class Ping(Message):
    nonce: int
    client_time_ms: int

    def _check(self, remote: bool) -> None:
        err = _err(remote)
        f.check_u64("nonce", self.nonce, err)
        f.check_u64("client_time_ms", self.client_time_ms, err)


@_message("Leave", CLIENT_MESSAGES)
class Leave(Message):
    def _check(self, remote: bool) -> None:
        return None


# --------------------------------------------------------------------- server -> client


@_message("HelloAck", SERVER_MESSAGES, added=("compact", "events"))
class HelloAck(Message):
    protocol: int
    #: WIRE A1: whether the compact envelope asked for in ``Hello`` was granted; None (absent)
    #: when the client did not ask.
    compact: bool | None = None
    #: Whether the event channel asked for in ``Hello`` was granted; None when not asked.
    events: bool | None = None

    def _check(self, remote: bool) -> None:
        err = _err(remote)
        f.check_u32("protocol", self.protocol, err)
        f.check_optional_bool("compact", self.compact, err)
        f.check_optional_bool("events", self.events, err)


@_message("MatchResult", SERVER_MESSAGES, added=("party_token",))
class MatchResult(Message):
    room_id: str
    url: str | None = None  # A2: the room lives on the node at url (a redirect)
    seat_token: bytes | None = None  # A2: the seat held there for 15 s
    party_token: bytes | None = None  # A4: opens the party's held seats (party_size > 1)

    def _check(self, remote: bool) -> None:
        err = _err(remote)
        f.check_str("room_id", self.room_id, MAX_MESSAGE_BYTES, err)
        if not f.is_room_id(self.room_id):
            raise err(f"room_id must be 8 chars of [A-Za-z0-9], got {f.preview(self.room_id)}")
        if self.url is not None:
            f.check_str("url", self.url, MAX_URL_CHARS, err, min_chars=1)
            if not self.url.startswith(("ws://", "wss://")):
                raise err(f"url must be a ws:// or wss:// URL, got {f.preview(self.url)}")
        if self.seat_token is not None:
            f.check_bytes("seat_token", self.seat_token, MAX_SEAT_TOKEN_BYTES, err)
        if self.party_token is not None:
            f.check_bytes("party_token", self.party_token, MAX_PARTY_TOKEN_BYTES, err)


@_message("JoinAccepted", SERVER_MESSAGES, added=("schema",))
class JoinAccepted(Message):
    room_id: str
    player_id: str
    tick_hz: int
    session_key: bytes
    resume_token: bytes
    entity: int | None = None
    #: The server's schema fingerprint (``Schema.fingerprint``); nil from an older server.
    schema: int | None = None

    def _check(self, remote: bool) -> None:
        err = _err(remote)
        f.check_str("room_id", self.room_id, MAX_MESSAGE_BYTES, err)
        if not f.is_room_id(self.room_id):
            raise err(f"room_id must be 8 chars of [A-Za-z0-9], got {f.preview(self.room_id)}")
        f.check_str("player_id", self.player_id, MAX_PLAYER_ID_CHARS, err, min_chars=1)
        f.check_int("tick_hz", self.tick_hz, 1, MAX_TICK_HZ, err)
        f.check_exact_bytes("session_key", self.session_key, SESSION_KEY_BYTES, err)
        f.check_bytes("resume_token", self.resume_token, MAX_RESUME_TOKEN_BYTES, err)
        f.check_optional_u32("entity", self.entity, err)
        f.check_optional_u32("schema", self.schema, err)


@_message("Snapshot", SERVER_MESSAGES)
class Snapshot(Message):
    id: int
    server_tick: int
    base_id: int | None
    compressed: bool
    payload: bytes
    last_input_seq: int | None = None

    def _check(self, remote: bool) -> None:
        err = _err(remote)
        f.check_u32("id", self.id, err)
        f.check_u64("server_tick", self.server_tick, err)
        f.check_optional_u32("base_id", self.base_id, err)
        f.check_bool("compressed", self.compressed, err)
        f.check_bytes("payload", self.payload, MAX_SNAPSHOT_PAYLOAD_BYTES, err)
        f.check_optional_u32("last_input_seq", self.last_input_seq, err)


@_message("Pong", SERVER_MESSAGES)
class Pong(Message):
    nonce: int
    client_time_ms: int
    server_time_ms: int
    server_tick: int

    def _check(self, remote: bool) -> None:
        err = _err(remote)
        f.check_u64("nonce", self.nonce, err)
        f.check_u64("client_time_ms", self.client_time_ms, err)
        f.check_u64("server_time_ms", self.server_time_ms, err)
        f.check_u64("server_tick", self.server_tick, err)


@_message("RateLimited", SERVER_MESSAGES)
class RateLimited(Message):
    retry_after_ms: int

    def _check(self, remote: bool) -> None:
        f.check_u32("retry_after_ms", self.retry_after_ms, _err(remote))


@_message("ProtocolError", SERVER_MESSAGES)
class ErrorMessage(Message):
    """The wire ``ProtocolError`` reply (named apart from the exception class)."""

    code: str
    message: str = ""

    def _check(self, remote: bool) -> None:
        err = _err(remote)
        f.check_str("code", self.code, MAX_ERROR_CODE_CHARS, err, min_chars=1)
        f.check_str("message", self.message, MAX_ERROR_MESSAGE_CHARS, err)


@_message("Events", SERVER_MESSAGES)
class Events(Message):
    """Reliable game events (only to a client whose ``Hello`` asked): ``events[i]`` has seq
    ``first_seq + i`` and is ``[server_tick u64, type str(1..64), data bin(<=4096)]``."""

    first_seq: int
    events: tuple[tuple[int, str, bytes], ...]

    def _check(self, remote: bool) -> None:
        err = _err(remote)
        f.check_u32("first_seq", self.first_seq, err)
        if type(self.events) not in (tuple, list) or not 1 <= len(self.events) <= 256:
            raise err("events must be an array of 1-256 events")
        for event in self.events:
            if type(event) not in (tuple, list) or len(event) != 3:
                raise err("each event must be [server_tick, type, data]")
            f.check_u64("server_tick", event[0], err)
            f.check_str("type", event[1], 64, err, min_chars=1)
            f.check_bytes("data", event[2], 4096, err)
        if self.first_seq + len(self.events) - 1 > 0xFFFFFFFF:
            raise err("event seq past u32")


ClientMessage = Hello | FindOrCreate | JoinRoom | Resume | InputFrame | Ack | Ping | Leave | Command
ServerMessage = (
    HelloAck | MatchResult | JoinAccepted | Snapshot | Pong | RateLimited | ErrorMessage | Events
)

# ----------------------------------------------------------------------------- codec

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
        # Every container/str/bin length is capped by the input size: nothing declared
        # larger than the bytes we actually hold can be allocated.
        wire = msgpack.unpackb(
            data,
            raw=False,
            use_list=False,
            strict_map_key=True,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=size // 2,
            max_ext_len=size,
        )
    except _MSGPACK_ERRORS as exc:
        raise MalformedMessage(f"undecodable msgpack: {type(exc).__name__}") from exc
    if type(wire) is not dict:
        raise MalformedMessage(f"message must be a msgpack map, got {type(wire).__name__}")
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
    return cls.from_map(wire)


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
        snapshot = object.__new__(Snapshot)
        for name, value in zip(Snapshot.FIELDS, parse_compact(bytes(data)), strict=True):
            object.__setattr__(snapshot, name, value)
        snapshot._check(remote=True)
        return snapshot
    return _decode(data, max_bytes, SERVER_MESSAGES, CLIENT_MESSAGES)  # type: ignore[return-value]
