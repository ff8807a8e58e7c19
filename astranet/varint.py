"""Unsigned LEB128 varints: the one encoder both wire layers use.

The compact Snapshot envelope (``astranet.net.envelope``) and the snapshot payload v2 header
(``astranet.replication.codec``) write counts and ids as LEB128: 7 bits per byte, least
significant group first, the high bit set on every byte but the last (as in protobuf). Each
layer keeps its own reader, because each rejects a bad varint with its own typed error.
Benchmark: none (a handful of bytes per message).
"""

from __future__ import annotations

__all__ = ["leb128"]


def leb128(value: int) -> bytes:
    """Unsigned LEB128 of ``value`` (>= 0), the shortest form."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
