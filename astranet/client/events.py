"""What the client tells its game: options, events, counters, and its own error classes.

Split from ``astranet.client.connection`` (the socket shell) so game code and the systems can
import these small frozen types without the asyncio machinery.

Errors (both :class:`astranet.errors.ConnectionClosed`, code 1006): :class:`ConnectFailed`
when the WebSocket cannot be opened, :class:`ReconnectGaveUp` when every resume attempt failed
until the deadline. A server refusal maps to the astranet.errors class of its wire ``code``
(:func:`server_error`).
Limits: none (plain values). Benchmark: none.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass

from astranet.errors import (
    BadRequest,
    ClusterUnavailable,
    ConnectionClosed,
    GameError,
    ProtocolError,
    ProtocolMismatch,
    RemoteProtocolError,
    ResumeDenied,
    RoomFailed,
    RoomFull,
    RoomLost,
    RoomNotFound,
    SchemaMismatch,
    SeatExpired,
    UnknownRegion,
)
from astranet.net.messages import ErrorMessage

__all__ = [
    "ClientEvent",
    "ClientOptions",
    "ClientStats",
    "ConnectFailed",
    "EventKind",
    "ReconnectGaveUp",
    "region_from_env",
    "server_error",
]

_SERVER_ERRORS: dict[str, type[RemoteProtocolError]] = {
    "unknown_region": UnknownRegion,
    "room_not_found": RoomNotFound,
    "room_full": RoomFull,
    "resume_denied": ResumeDenied,
    "room_lost": RoomLost,
    "bad_request": BadRequest,
    "protocol_mismatch": ProtocolMismatch,
    "schema_mismatch": SchemaMismatch,
    "game_error": GameError,
    "room_failed": RoomFailed,
    "seat_expired": SeatExpired,
    "unavailable": ClusterUnavailable,
}


class ConnectFailed(ConnectionClosed):
    """The WebSocket could not be opened (refused, unreachable, not a WebSocket server)."""

    def __init__(self, url: str, cause: str) -> None:
        super().__init__(1006, f"cannot connect to {url}: {cause}")


class ReconnectGaveUp(ConnectionClosed):
    """The connection dropped and every resume attempt failed until the deadline."""

    def __init__(self, seconds: float, cause: str) -> None:
        super().__init__(1006, f"gave up reconnecting after {seconds:.1f} s: {cause}")


class EventKind(enum.Enum):
    CONNECTED = "connected"  # WebSocket open (first connection)
    JOINED = "joined"  # JoinAccepted: room, player, entity
    DISCONNECTED = "disconnected"  # the socket dropped; reconnecting follows if resumable
    RECONNECTING = "reconnecting"  # an attempt is scheduled after delay_s
    RECONNECTED = "reconnected"  # resumed; downtime_s since the drop
    GAVE_UP = "gave_up"  # final: see GameClient.error
    SERVER_ERROR = "server_error"  # a ProtocolError reply that did not end the session
    CLOSED = "closed"  # final: the session ended (Leave, or a final close code)


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """One thing that happened to the connection; ``number`` counts events from 1."""

    number: int
    kind: EventKind
    detail: str = ""
    room_id: str | None = None
    player_id: str | None = None
    entity: int | None = None
    attempt: int = 0
    delay_s: float = 0.0
    downtime_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ClientOptions:
    url: str = "ws://127.0.0.1:8788"
    region: str = "us-east"
    game_mode: str = "coop"
    party_size: int = 1
    room_id: str | None = None  # JoinRoom this room instead of FindOrCreate
    party_token: bytes | None = None  # WIRE A4: the leader's token, takes a held party seat
    token: str | None = None  # WIRE A4: the player's JWT (servers with --auth-jwt-*)
    ping_interval_s: float = 1.0
    open_timeout_s: float = 5.0
    join_timeout_s: float = 5.0
    silence_timeout_s: float = 3.0  # 90 missed 30 Hz snapshots: the link is dead
    reconnect: bool = True
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 1.0  # the network back => resumed within ~1 s plus a handshake
    give_up_after_s: float = 30.0  # WIRE rule 7 holds the seat for 30 s
    seed: int | None = None  # backoff jitter RNG
    #: ``game.schema.fingerprint`` of the game this client decodes: the server refuses a
    #: mismatch at join (SchemaMismatch) instead of sending snapshots nobody can decode.
    #: None: no check (a client that decodes no snapshots).
    schema: int | None = None
    #: Other nodes of the cluster (ws:// URLs) to resume on when the one serving us is gone
    #: (WIRE A3 failover); tried after it, in order, besides ``url`` and redirects seen.
    fallback_urls: tuple[str, ...] = ()
    #: An HTTP ``GET /nodes`` URL of the cluster (A2), read when resuming fails on the node
    #: that served us: its live nodes' ``url`` join the candidates.
    nodes_url: str | None = None
    # WIRE A1: ask for the compact Snapshot envelope (the server may refuse; both decode).
    compact_envelope: bool = True
    # Produce inputs just before the server tick (astranet.client.pacing); False: the
    # prediction system's own fixed-step clock, at whatever phase the frames fall.
    input_pacing: bool = True


@dataclass(slots=True)
class ClientStats:
    snapshots: int = 0
    snapshot_bytes: int = 0
    snapshots_dropped: int = 0  # inbox overflow
    inputs_sent: int = 0
    inputs_refused: int = 0  # send_input while not in a room
    pongs: int = 0
    rate_limited: int = 0
    reconnects: int = 0
    redirects: int = 0  # A2: joins repeated at another node


def region_from_env(environ: Mapping[str, str] = os.environ, default: str = "us-east") -> str:
    """The region a client asks for, from ``AW_REGION``.

    To the server ``AW_REGION`` is the *list* of regions it serves (``us-east,eu-central``);
    one environment shared by server and clients is common (a compose file, a CI job), so a
    client takes the first region of such a list instead of asking for ``"us-east,eu-central"``.
    """
    first = environ.get("AW_REGION", "").split(",")[0].strip()
    return first or default


def server_error(message: ErrorMessage) -> ProtocolError:
    kind = _SERVER_ERRORS.get(message.code, RemoteProtocolError)
    return kind(message.message or message.code, code=message.code)
