"""Input-frame signatures and replay protection (WIRE rule 3).

``sig`` = the first 16 bytes of ``HMAC-SHA256(session_key, seq u32 LE || tick_ms u64 LE ||
input_blob)``. Verification uses ``hmac.compare_digest`` (constant time in the sig bytes).

Operations: ``sign``/``verify`` one-shot functions (for tests, tools and the test vector);
``InputSigner`` for the hot path, which keys the HMAC once per session and ``copy()``s the
keyed state per frame, saving the two key-pad compressions a fresh ``hmac.new`` (or the
one-shot ``hmac.digest``) costs;
``ReplayGuard``, strictly increasing ``seq`` per session, gaps allowed.

Limits: keys of any length are accepted by HMAC, but the protocol issues 32-byte keys
(``SESSION_KEY_BYTES``); ``seq`` is u32 and ``tick_ms`` u64 (``struct.error`` otherwise, so
callers validate first — the message classes do).
Benchmark: ``benchmarks/protocol.py`` ("sign+verify").
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Protocol

from astranet.errors import LocalProtocolError, ReplayedInput
from astranet.net.limits import SIG_BYTES, U32_MAX

try:
    # OpenSSL's keyed HMAC-SHA256 object itself: copy() is a C struct copy, and leaving out
    # hmac.HMAC's Python wrapper (what hmac.new returns around it) saves ~0.35 us a frame.
    from _hashlib import hmac_new as _openssl_hmac_new
except ImportError:  # a Python built without OpenSSL: hmac's own (slower, same digests)
    _openssl_hmac_new = None


class _KeyedHmac(Protocol):
    def copy(self) -> _KeyedHmac: ...
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


def _keyed_sha256(key: bytes) -> _KeyedHmac:
    """An HMAC-SHA256 state that has absorbed ``key``: ``copy()`` it per message."""
    if _openssl_hmac_new is not None:
        return _openssl_hmac_new(key, digestmod="sha256")  # type: ignore[no-any-return]
    return hmac.new(key, digestmod="sha256")


__all__ = [
    "InputSigner",
    "ReplayGuard",
    "command_key",
    "sign",
    "sign_command",
    "verify",
    "view_key",
]

# seq as u32 little-endian, then tick_ms as u64 little-endian: 12 bytes before the blob.
_SIGNED_HEADER = struct.Struct("<IQ")
# A frame that states a view (lag compensation) signs seq, tick_ms, view_tick u64, view_frac
# u16, then the blob, under a key derived from the session key: a distinct key (not just a
# longer header) so no v1 frame's bytes can ever stand for a view frame's, or back.
_SIGNED_VIEW_HEADER = struct.Struct("<IQQH")
VIEW_KEY_LABEL = b"astranet input view v1"

View = tuple[int, int]  # (view_tick, view_frac)
_compare_digest = hmac.compare_digest


COMMAND_KEY_LABEL = b"astranet command v1"
_COMMAND_HEADER = struct.Struct("<IB")  # seq u32 LE, then the length of the type in bytes


def command_key(session_key: bytes) -> bytes:
    """The key that signs ``Command`` messages: HMAC-SHA256(session_key, COMMAND_KEY_LABEL)."""
    return hmac.new(session_key, COMMAND_KEY_LABEL, hashlib.sha256).digest()


def sign_command(key: bytes, seq: int, command_type: str, data: bytes) -> bytes:
    """16-byte signature of a Command under ``key`` = ``command_key(session_key)``:
    HMAC(key, seq u32 LE || len(type) u8 || type UTF-8 || data)[0:16]."""
    kind = command_type.encode()
    try:
        header = _COMMAND_HEADER.pack(seq, len(kind))
    except struct.error as exc:
        raise LocalProtocolError(f"command seq/type out of range: {seq}, {command_type!r}") from exc
    return hmac.new(key, header + kind + data, hashlib.sha256).digest()[:SIG_BYTES]


def view_key(session_key: bytes) -> bytes:
    """The key that signs frames carrying a view: HMAC-SHA256(session_key, VIEW_KEY_LABEL)."""
    return hmac.new(session_key, VIEW_KEY_LABEL, hashlib.sha256).digest()


def _check_header(seq: int, tick_ms: int, view: View | None = None) -> bytes:
    try:
        if view is None:
            return _SIGNED_HEADER.pack(seq, tick_ms)
        return _SIGNED_VIEW_HEADER.pack(seq, tick_ms, view[0], view[1])
    except struct.error as exc:
        raise LocalProtocolError(f"seq/tick_ms/view out of range: {seq} {tick_ms} {view}") from exc


def sign(key: bytes, seq: int, tick_ms: int, blob: bytes, view: View | None = None) -> bytes:
    """The 16-byte signature of one input frame (``view``: its (view_tick, view_frac))."""
    if view is not None:
        key = view_key(key)
    digest = hmac.new(key, _check_header(seq, tick_ms, view) + blob, hashlib.sha256).digest()
    return digest[:SIG_BYTES]


def verify(
    key: bytes, seq: int, tick_ms: int, blob: bytes, sig: bytes, view: View | None = None
) -> bool:
    """True when ``sig`` is the signature of the frame under ``key`` (constant time)."""
    return hmac.compare_digest(sign(key, seq, tick_ms, blob, view), sig)


class InputSigner:
    """Signs and verifies frames of one session; the key is absorbed once, at construction."""

    __slots__ = ("_key", "_keyed", "_keyed_view")

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._keyed = _keyed_sha256(key)
        self._keyed_view: _KeyedHmac | None = None  # keyed on first use: v1 clients never pay

    def _mac(self, seq: int, tick_ms: int, blob: bytes, view: View | None) -> _KeyedHmac:
        if view is None:
            try:
                header = _SIGNED_HEADER.pack(seq, tick_ms)
            except struct.error:
                header = _check_header(seq, tick_ms)  # raises the LocalProtocolError
            mac = self._keyed.copy()
        else:
            header = _check_header(seq, tick_ms, view)
            if self._keyed_view is None:
                self._keyed_view = _keyed_sha256(view_key(self._key))
            mac = self._keyed_view.copy()
        mac.update(header)
        mac.update(blob)
        return mac

    def sign(self, seq: int, tick_ms: int, blob: bytes, view: View | None = None) -> bytes:
        return self._mac(seq, tick_ms, blob, view).digest()[:SIG_BYTES]

    def verify(
        self, seq: int, tick_ms: int, blob: bytes, sig: bytes, view: View | None = None
    ) -> bool:
        mac = self._mac(seq, tick_ms, blob, view)
        return _compare_digest(mac.digest()[:SIG_BYTES], sig)


class ReplayGuard:
    """Accepts each ``seq`` only if it is greater than every one accepted before.

    ``last_seq`` is the highest accepted so far (``None``: nothing yet, so any u32 passes).
    A resumed session passes the previous session's last accepted seq to continue from it.
    """

    __slots__ = ("last_seq",)

    def __init__(self, last_seq: int | None = None) -> None:
        if last_seq is not None and not (type(last_seq) is int and 0 <= last_seq <= U32_MAX):
            raise LocalProtocolError(f"last_seq must be a u32 or None, got {last_seq!r}")
        self.last_seq = last_seq

    def is_fresh(self, seq: int) -> bool:
        return self.last_seq is None or seq > self.last_seq

    def accept(self, seq: int) -> None:
        """Record ``seq``; raise ``ReplayedInput`` if it is not newer than the last one."""
        if not self.is_fresh(seq):
            raise ReplayedInput(f"input frame replayed: seq {seq} <= {self.last_seq}")
        self.last_seq = seq
