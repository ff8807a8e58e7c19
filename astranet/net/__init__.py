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

# Each module's ``__all__`` is its public API; the package re-exports them all, so a name is
# listed once, where it is defined.
from astranet.net import backoff, client_conn, clock, messages, ratelimit, server_conn, signing
from astranet.net.backoff import *  # noqa: F403
from astranet.net.client_conn import *  # noqa: F403
from astranet.net.clock import *  # noqa: F403
from astranet.net.messages import *  # noqa: F403
from astranet.net.ratelimit import *  # noqa: F403
from astranet.net.server_conn import *  # noqa: F403
from astranet.net.signing import *  # noqa: F403

__all__ = sorted(
    {
        *backoff.__all__,
        *client_conn.__all__,
        *clock.__all__,
        *messages.__all__,
        *ratelimit.__all__,
        *server_conn.__all__,
        *signing.__all__,
    }
)
