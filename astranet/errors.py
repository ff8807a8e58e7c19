"""The one exception tree of astranet.

Every error astranet raises derives from :class:`AstranetError`. Errors about the
wire carry the WIRE.md ``code`` string a ``ProtocolError`` reply uses, and an
optional WebSocket ``close_code`` when the connection must end, so one function
(``astranet.net.server_conn``'s ``_fail``) can turn any of them into the reply,
the way websockets' ``fail()`` and h11's ``error_status_hint`` do.

    AstranetError
    ├── ProtocolError                 code, close_code
    │   ├── LocalProtocolError        we misused the API (bad field value on encode)
    │   └── RemoteProtocolError       the peer sent something wrong
    │       ├── MalformedMessage      "malformed"      (rule 6, a strike)
    │       ├── UnknownMessageType    "unknown_type"   (rule 6, a strike)
    │       ├── PayloadTooLarge       "too_large"      close 1009 (rule 6)
    │       ├── ExpectedHello         "expected_hello" close 1002 (rule 1)
    │       ├── ProtocolMismatch      "protocol_mismatch" close 1002 (rule 1)
    │       ├── RoomFailed            "room_failed"    close 1011 (a game system raised)
    │       ├── SchemaMismatch        "schema_mismatch" close 1002 (another game's schema)
    │       ├── BadSignature          "bad_signature"  close 1008 under kick (rule 3)
    │       ├── ReplayedInput         "replay"         close 1008 under kick (rule 3)
    │       ├── RateLimitExceeded     "rate_limited"   close 1008 (rule 5)
    │       ├── BadRequest            "bad_request"    (rule 2)
    │       ├── Unauthorized          "unauthorized"   close 1008 (A4: missing/bad JWT)
    │       └── SnapshotDecodeError   "malformed"      a snapshot payload that does not decode
    ├── MatchmakingError (also a RemoteProtocolError: its reply goes on the wire)
    │   ├── UnknownRegion             "unknown_region"
    │   ├── RoomNotFound              "room_not_found"
    │   ├── RoomFull                  "room_full"
    │   ├── ResumeDenied              "resume_denied"
    │   ├── Busy                      "busy"          a peer over its room bound (A4)
    │   ├── SeatExpired               "seat_expired"  a wrong, used or expired seat_token (A2)
    │   ├── RoomLost                  "room_lost"     the room's node is dead (A2)
    │   ├── ClusterUnavailable        "unavailable"   the cluster directory (Redis) is down
    │   └── GameError                 "game_error"    the game's setup()/spawn_player() raised
    ├── InvalidState (also AssertionError)   an API call in the wrong phase
    ├── ConnectionClosed              the peer or we closed; carries code and reason
    ├── ConfigurationError (also ValueError) a bad flag or env value
    └── StorageError                  database missing, corrupt, foreign or too new
"""

from __future__ import annotations

__all__ = [
    "AstranetError",
    "BadRequest",
    "BadSignature",
    "Busy",
    "ClusterUnavailable",
    "ConfigurationError",
    "ConnectionClosed",
    "ExpectedHello",
    "GameError",
    "InvalidState",
    "LocalProtocolError",
    "MalformedMessage",
    "MatchmakingError",
    "PayloadTooLarge",
    "ProtocolError",
    "ProtocolMismatch",
    "RateLimitExceeded",
    "RemoteProtocolError",
    "ReplayedInput",
    "ResumeDenied",
    "RoomFailed",
    "RoomFull",
    "RoomLost",
    "RoomNotFound",
    "SchemaMismatch",
    "SeatExpired",
    "SnapshotDecodeError",
    "StorageError",
    "Unauthorized",
    "UnknownMessageType",
    "UnknownRegion",
]


class AstranetError(Exception):
    """Base class of every error astranet raises."""


class ProtocolError(AstranetError):
    """A violation of the wire protocol.

    ``code`` is the WIRE.md error code sent in a ``ProtocolError`` reply;
    ``close_code`` is the WebSocket close code when the violation ends the
    connection, else ``None``.
    """

    code: str = "malformed"
    close_code: int | None = None

    def __init_subclass__(cls, *, code: str | None = None, close_code: int | None = None) -> None:
        """``class X(ProtocolError, code=..., close_code=...)`` sets the class defaults."""
        super().__init_subclass__()
        if code is not None:
            cls.code = code
        if close_code is not None:
            cls.close_code = close_code

    def __init__(
        self, message: str = "", *, code: str | None = None, close_code: int | None = None
    ) -> None:
        super().__init__(message or self.__class__.__name__)
        if code is not None:
            self.code = code
        if close_code is not None:
            self.close_code = close_code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class LocalProtocolError(ProtocolError):
    """We tried to build or send something the protocol forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids."""


class MalformedMessage(RemoteProtocolError, code="malformed"):
    """A message that does not decode (WIRE rule 6: a strike)."""


class UnknownMessageType(RemoteProtocolError, code="unknown_type"):
    """A message ``type`` the protocol does not define (rule 6: a strike)."""


class PayloadTooLarge(RemoteProtocolError, code="too_large", close_code=1009):
    """A message larger than the server accepts (``--max-message-bytes``; rule 6, close 1009)."""


class ExpectedHello(RemoteProtocolError, code="expected_hello", close_code=1002):
    """A first message that is not ``Hello`` (rule 1, close 1002)."""


class ProtocolMismatch(RemoteProtocolError, code="protocol_mismatch", close_code=1002):
    """A ``Hello`` for a protocol this server does not speak (rule 1, close 1002)."""


class SchemaMismatch(RemoteProtocolError, code="schema_mismatch", close_code=1002):
    """Client and server replicate different components (their schema fingerprints differ).

    The server refuses such a ``Hello`` (``schema_mismatch``, close 1002); a client also raises
    it when ``JoinAccepted.schema`` is not its own. Fix: build both from the same game code.
    """


def schema_mismatch_message(client: int, server: int) -> str:
    """The one wording of a schema mismatch, on both sides of the wire."""
    return (
        f"schema mismatch: client={client:#010x}, server={server:#010x}: the client decodes"
        " other replicated components than the server runs (build both from the same game;"
        " GET /schema on the server's HTTP port shows its schema)"
    )


class BadSignature(RemoteProtocolError, code="bad_signature"):
    """An ``InputFrame`` whose signature does not verify (rule 3; close 1008 under ``kick``)."""


class ReplayedInput(RemoteProtocolError, code="replay"):
    """A replayed ``InputFrame`` (its ``seq`` was seen already; rule 3, 1008 under ``kick``)."""


class RateLimitExceeded(RemoteProtocolError, code="rate_limited", close_code=1008):
    """A connection that keeps sending past its rate limit (rule 5, close 1008)."""


class BadRequest(RemoteProtocolError, code="bad_request"):
    """A well-formed request with a value the server refuses (e.g. a bad ``game_mode``, rule 2)."""


class Unauthorized(RemoteProtocolError, code="unauthorized", close_code=1008):
    """WIRE A4: a missing, malformed, expired or wrongly signed token (reply, then 1008)."""


class SnapshotDecodeError(RemoteProtocolError, code="malformed"):
    """A snapshot payload is truncated, oversized, inconsistent or has no base."""


class MatchmakingError(RemoteProtocolError):
    """A FindOrCreate / JoinRoom / Resume request that cannot be honoured."""


class UnknownRegion(MatchmakingError, code="unknown_region"):
    """A region no node of this server (or cluster) serves."""


class RoomNotFound(MatchmakingError, code="room_not_found"):
    """A room id that does not exist (``JoinRoom``, ``Resume``)."""


class RoomFull(MatchmakingError, code="room_full"):
    """No seat to give: the room is full, or the server is at its room limit."""


class ResumeDenied(MatchmakingError, code="resume_denied"):
    """A ``Resume`` that cannot be honoured: unknown player, wrong token or no seat held."""


class Busy(MatchmakingError, code="busy"):
    """WIRE A4: this peer address created too many rooms lately (--max-rooms-per-peer)."""


class SeatExpired(MatchmakingError, code="seat_expired"):
    """A ``JoinRoom`` whose ``seat_token`` is wrong, already used or past its 15 s (A2)."""


class RoomLost(MatchmakingError, code="room_lost"):
    """A ``Resume`` for a room whose node the cluster declared dead (A2)."""


class ClusterUnavailable(MatchmakingError, code="unavailable"):
    """Matchmaking needs the cluster directory (Redis) and cannot reach it right now.

    Rooms already running keep ticking; only new requests are refused, so a client may retry.
    """


class GameError(MatchmakingError, code="game_error"):
    """The game's own code (``setup``, ``spawn_player``) raised while serving this request.

    Nothing the request started is kept (no room, no seat, no avatar); the server logged the
    traceback, and the connection stays in the lobby.
    """


class RoomFailed(RemoteProtocolError, code="room_failed", close_code=1011):
    """The room's simulation (a game system) raised: the room is closed for every player.

    Sent as ``ProtocolError{code:"room_failed"}`` right before close 1011 ``room failed``; a
    client must not try to resume (the room is gone).
    """


class InvalidState(AstranetError, AssertionError):
    """An API call that the current connection phase does not allow."""


class ConnectionClosed(AstranetError):
    """The connection is closed; ``code`` and ``reason`` say how."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class ConfigurationError(AstranetError, ValueError):
    """A configuration value (flag or environment variable) is invalid."""


class StorageError(AstranetError):
    """The database is missing, corrupt, foreign, or from a newer server."""
