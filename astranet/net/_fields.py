"""Field checks shared by every message class.

Each check takes the field name, the value and the error class to raise, so one function
serves both directions: ``LocalProtocolError`` when our own code builds a bad message, and
``MalformedMessage`` when a peer sent one. Checks are exact-type (``type(v) is int``) on
purpose: msgpack decodes ints to ``int`` and never to ``bool``, while ``isinstance`` would let
``True`` pass as ``1``. Error texts never embed more than a short preview of the value, so a
64 KiB string cannot inflate a ``ProtocolError`` reply.

Benchmark: part of the decode path in ``benchmarks/protocol.py``.
"""

from __future__ import annotations

import re
from typing import Any

from astranet.errors import ProtocolError
from astranet.net.limits import I64_MIN, MAX_CLOSE_REASON_BYTES, U32_MAX, U64_MAX

ErrorClass = type[ProtocolError]

ROOM_ID_RE = re.compile(r"[A-Za-z0-9]{8}")
GAME_MODE_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")

_PREVIEW_CHARS = 32  # keeps error texts short whatever the peer sent


def close_reason(reason: str) -> str:
    """``reason`` cut to what a close frame holds: 123 bytes of UTF-8, never half a character."""
    encoded = reason.encode("utf-8")[:MAX_CLOSE_REASON_BYTES]
    return encoded.decode("utf-8", "ignore")


def preview(value: Any) -> str:
    """A short, safe description of ``value`` for error messages."""
    text = repr(value)
    if len(text) > _PREVIEW_CHARS:
        text = text[:_PREVIEW_CHARS] + "..."
    return f"{type(value).__name__} {text}"


def check_int(name: str, value: Any, low: int, high: int, err: ErrorClass) -> None:
    """Require an int (not a bool) in ``[low, high]``."""
    if type(value) is not int or not low <= value <= high:
        raise err(f"{name} must be an int in [{low}, {high}], got {preview(value)}")


def check_u32(name: str, value: Any, err: ErrorClass) -> None:
    if type(value) is not int or not 0 <= value <= U32_MAX:
        raise err(f"{name} must be a u32, got {preview(value)}")


def check_u64(name: str, value: Any, err: ErrorClass) -> None:
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise err(f"{name} must be a u64, got {preview(value)}")


def check_optional_u32(name: str, value: Any, err: ErrorClass) -> None:
    if value is not None:
        check_u32(name, value, err)


def check_any_int(name: str, value: Any, err: ErrorClass) -> None:
    """Any int msgpack can carry (signed 64-bit up to u64)."""
    check_int(name, value, I64_MIN, U64_MAX, err)


def check_bool(name: str, value: Any, err: ErrorClass) -> None:
    if type(value) is not bool:
        raise err(f"{name} must be a bool, got {preview(value)}")


def check_optional_bool(name: str, value: Any, err: ErrorClass) -> None:
    if value is not None and type(value) is not bool:
        raise err(f"{name} must be a bool or nil, got {preview(value)}")


def check_str(
    name: str, value: Any, max_chars: int, err: ErrorClass, *, min_chars: int = 0
) -> None:
    if type(value) is not str or not min_chars <= len(value) <= max_chars:
        raise err(f"{name} must be a str of {min_chars}-{max_chars} chars, got {preview(value)}")


def check_bytes(name: str, value: Any, max_bytes: int, err: ErrorClass) -> None:
    if type(value) is not bytes or len(value) > max_bytes:
        raise err(f"{name} must be bin of at most {max_bytes} bytes, got {preview(value)}")


def check_exact_bytes(name: str, value: Any, size: int, err: ErrorClass) -> None:
    if type(value) is not bytes or len(value) != size:
        raise err(f"{name} must be bin of exactly {size} bytes, got {preview(value)}")


def is_room_id(value: str) -> bool:
    return ROOM_ID_RE.fullmatch(value) is not None


def is_game_mode(value: str) -> bool:
    return GAME_MODE_RE.fullmatch(value) is not None
