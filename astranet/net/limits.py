"""Named bounds of the wire protocol, each with the reason for its value.

Every buffer, string and queue the protocol layer accepts from a peer is bounded by one of
these constants; ``docs/protocol.md`` repeats them for client authors. Changing one changes
the wire contract for clients, so keep the doc and this module in step
(``tests/net/test_protocol_doc.py`` checks the examples, not these numbers).
"""

from __future__ import annotations

from typing import Final

#: WIRE.md ``PROTOCOL_VERSION``; a ``Hello`` with another value gets ``protocol_mismatch``.
PROTOCOL_VERSION: Final = 1

#: WIRE rule 6: one WebSocket message above this is closed 1009. 64 KiB holds a full
#: snapshot of a 4-player room with hundreds of replicated rows and is what websockets'
#: own default ``max_size`` (1 MiB) comfortably exceeds, so the shell can set it to this.
MAX_MESSAGE_BYTES: Final = 64 * 1024

U32_MAX: Final = 2**32 - 1
U64_MAX: Final = 2**64 - 1
#: msgpack can carry signed 64-bit ints; fields that are "any int" (``party_size``) accept
#: this range so the server can answer ``bad_request`` instead of ``malformed``.
I64_MIN: Final = -(2**63)

#: Length of ``sig`` in ``InputFrame``: a 128-bit truncated HMAC-SHA256 (WIRE rule 3).
SIG_BYTES: Final = 16
#: ``session_key`` in ``JoinAccepted``: a full-strength HMAC-SHA256 key.
SESSION_KEY_BYTES: Final = 32

#: Room ids are exactly 8 characters of ``[A-Za-z0-9]`` (WIRE rule 2).
ROOM_ID_CHARS: Final = 8
#: ``game_mode`` is 1-32 characters of ``[A-Za-z0-9_-]`` (WIRE rule 2).
GAME_MODE_MAX_CHARS: Final = 32
#: ``party_size`` the server accepts (room capacity is 4); others get ``bad_request``.
PARTY_SIZE_MIN: Final = 1
PARTY_SIZE_MAX: Final = 4

#: Region names are short deployment labels ("us-east"); 64 leaves room for any cloud's.
MAX_REGION_CHARS: Final = 64
#: Player ids are server-issued (uuid4 hex is 32); 64 allows other id schemes.
MAX_PLAYER_ID_CHARS: Final = 64
#: Resume tokens are server-issued secrets (32 random bytes); 64 allows a MAC'd format.
MAX_RESUME_TOKEN_BYTES: Final = 64
MAX_SEAT_TOKEN_BYTES: Final = 64  # A2 seat_token: opaque, ours are 16 bytes
#: WIRE A4 seq window: an InputFrame's seq may exceed the last accepted one (or 0 in a new
#: session) by at most this. 65,536 frames is 36 minutes at 30 Hz, far past any gap a
#: resumed client leaves (its seq counts on while disconnected, <= 30 s = 900 frames); a
#: frame beyond it is refused unapplied, so a signed seq = 2**32-1 cannot lock the seat.
MAX_INPUT_SEQ_JUMP: Final = 1 << 16
MAX_PARTY_TOKEN_BYTES: Final = 64  # A4 party_token: opaque, ours are 16 bytes
#: A4 Hello.token: a JWT. Identity-provider tokens with a few claims are 300-1,500 chars;
#: 4 KiB (a browser cookie's limit) leaves room and bounds what verification must read.
MAX_AUTH_TOKEN_CHARS: Final = 4096
MAX_URL_CHARS: Final = 512  # A2 MatchResult.url: a --public-url such as wss://host:port
#: ``ProtocolError.message`` is for humans and logs; 1 KiB fits a list of served regions.
MAX_ERROR_MESSAGE_CHARS: Final = 1024
#: ``ProtocolError.code`` is a short identifier such as ``unknown_region``.
MAX_ERROR_CODE_CHARS: Final = 64
#: One tick of one player's input. Games send a few bytes (buttons + axes); 8 KiB is
#: generous and keeps a flood of maximal frames cheap to HMAC (rule 5 bounds the count).
MAX_INPUT_BLOB_BYTES: Final = 8 * 1024
#: Room for the Snapshot envelope (keys and ints are < 100 bytes encoded) inside one message.
SNAPSHOT_ENVELOPE_RESERVE_BYTES: Final = 128
#: The largest snapshot ``payload`` whose whole message still fits ``MAX_MESSAGE_BYTES``.
MAX_SNAPSHOT_PAYLOAD_BYTES: Final = MAX_MESSAGE_BYTES - SNAPSHOT_ENVELOPE_RESERVE_BYTES
#: ``tick_hz`` in ``JoinAccepted``: a server tick rate between 1 and 1000 Hz.
MAX_TICK_HZ: Final = 1000

#: WebSocket close reasons must fit a 125-byte control frame (2 bytes are the code).
MAX_CLOSE_REASON_BYTES: Final = 123

#: How many acknowledged snapshot ids a ``ClientConnection`` remembers; the server only
#: ever deltas against recent ones, and 64 is two seconds at 30 Hz.
MAX_ACK_HISTORY: Final = 64

#: Outbox bound of a connection: messages queued for the shell but not yet drained by
#: ``data_to_send()``. The shell drains after every ``receive_data``/``send``, so hitting
#: this means the shell stopped draining; we close 1011 rather than grow without end.
MAX_PENDING_MESSAGES: Final = 1024
#: Inbox bound: validated messages not yet drained by ``messages_received()``.
MAX_PENDING_EVENTS: Final = 1024
