"""astranet.net: the sans-I/O wire protocol (WIRE.md v1) and, at the edges, asyncio shells.

Sans-I/O core (no sockets, no asyncio, no wall-clock reads; clocks are injected):
    messages      one frozen dataclass per wire message, ``encode`` / ``decode_*_message``
    signing       InputFrame HMAC (``sign``, ``verify``, ``InputSigner``) and ``ReplayGuard``
    ratelimit     ``TokenBucket`` and the flood policy (``RateLimitConfig``, ``FloodGuard``)
    server_conn   ``ServerConnection``: rules 1, 3, 5 and 6 for one client
    client_conn   ``ClientConnection``: handshake, session key, seq numbering, acks
    limits        every named bound of the protocol
    clock         RTT smoothing and server-clock estimation from Ping/Pong (client side)
    backoff       reconnect delays with jitter
Asyncio edges: ``linkconditioner`` (a degrading loopback proxy for tests; not re-exported).
The byte-level contract for client authors is ``docs/protocol.md``.
"""

from astranet.net.backoff import Backoff
from astranet.net.client_conn import ClientConnection, ClientPhase
from astranet.net.clock import RttEstimator, ServerClock
from astranet.net.messages import (
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    Ack,
    ClientMessage,
    ErrorMessage,
    FindOrCreate,
    Hello,
    HelloAck,
    InputFrame,
    JoinAccepted,
    JoinRoom,
    Leave,
    MatchResult,
    Message,
    Ping,
    Pong,
    RateLimited,
    Resume,
    ServerMessage,
    Snapshot,
    decode_client_message,
    decode_server_message,
    encode,
)
from astranet.net.ratelimit import Admission, FloodGuard, RateLimitConfig, TokenBucket
from astranet.net.server_conn import ConnectionStats, ServerConnection, ServerPhase
from astranet.net.signing import InputSigner, ReplayGuard, sign, verify

__all__ = [
    "CLIENT_MESSAGES",
    "SERVER_MESSAGES",
    "Ack",
    "Admission",
    "Backoff",
    "ClientConnection",
    "ClientMessage",
    "ClientPhase",
    "ConnectionStats",
    "ErrorMessage",
    "FindOrCreate",
    "FloodGuard",
    "Hello",
    "HelloAck",
    "InputFrame",
    "InputSigner",
    "JoinAccepted",
    "JoinRoom",
    "Leave",
    "MatchResult",
    "Message",
    "Ping",
    "Pong",
    "RateLimitConfig",
    "RateLimited",
    "ReplayGuard",
    "Resume",
    "RttEstimator",
    "ServerClock",
    "ServerConnection",
    "ServerMessage",
    "ServerPhase",
    "Snapshot",
    "TokenBucket",
    "decode_client_message",
    "decode_server_message",
    "encode",
    "sign",
    "verify",
]
