"""Snapshot envelopes: the bytes of a ``Snapshot`` message, built once per distinct payload.

A room encodes one payload per distinct (base, visibility) and hands it to several clients that
differ only in ``last_input_seq``. :class:`SnapshotEnvelope` builds the envelope of one payload
once and splices each client's ``last_input_seq`` in, in either encoding:

* **map** (v1, WIRE "Envelope"): the msgpack map ``encode(Snapshot(...))`` would give, byte for
  byte. ``last_input_seq`` is its last value, so the shared prefix is the map encoded with
  ``nil`` there, minus that one ``0xc0`` byte; a client's bytes are prefix + its msgpack uint.
* **compact** (WIRE A1, granted through ``Hello.compact``)::

      0xC1                      marker: msgpack's "never used" byte, so no map starts with it
      flags (u8)                bit 0 compressed, bit 1 base_id present,
                                bit 2 last_input_seq present; bits 3-7 zero (kind 0 = Snapshot)
      id                        LEB128 u32
      server_tick               LEB128 u64
      id - base_id              LEB128 u32, if bit 1
      last_input_seq            LEB128 u32, if bit 2
      payload                   every remaining byte

  LEB128: 7 bits per byte, least significant group first, high bit set on all but the last
  byte (as in protobuf); at most 5 bytes for a u32, 10 for a u64. A typical envelope is 10-12
  bytes against ~84 for the map. ``base_id > id`` cannot be written as a delta; such a
  snapshot goes out as a map envelope (decoders accept both at any time).

Operations: ``SnapshotEnvelope(...).encode(last_input_seq, compact)`` (or ``.parts(...)``, the
same bytes in two pieces for a caller that frames them); ``parse_compact(data)``
(the client side, used by ``decode_server_message``); ``is_compact(data)``.
Limits: payload at most ``MAX_SNAPSHOT_PAYLOAD_BYTES`` (checked when the envelope is built, a
``LocalProtocolError`` like ``Snapshot(...)``); varints longer than their type are malformed.
Benchmark: benchmarks/protocol.py ("snapshot send per client").
"""

from __future__ import annotations

import struct

import msgpack

from astranet.errors import LocalProtocolError, MalformedMessage, UnknownMessageType
from astranet.net.limits import MAX_SNAPSHOT_PAYLOAD_BYTES, U32_MAX, U64_MAX
from astranet.varint import leb128

__all__ = [
    "COMPACT_MARKER",
    "CompactSnapshotFields",
    "SnapshotEnvelope",
    "is_compact",
    "parse_compact",
]

#: First byte of every compact message (0xc1 is never produced by a msgpack encoder).
COMPACT_MARKER = 0xC1
FLAG_COMPRESSED = 0x01
FLAG_BASE = 0x02
FLAG_LAST_INPUT_SEQ = 0x04
_KNOWN_FLAGS = FLAG_COMPRESSED | FLAG_BASE | FLAG_LAST_INPUT_SEQ
_MSGPACK_NIL = b"\xc0"
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

#: (id, server_tick, base_id, compressed, payload, last_input_seq) of a compact Snapshot.
CompactSnapshotFields = tuple[int, int, "int | None", bool, bytes, "int | None"]


def msgpack_uint(value: int) -> bytes:
    """msgpack's smallest encoding of a u32 (what ``msgpack.packb`` emits)."""
    if value < 0x80:
        return bytes((value,))
    if value <= 0xFF:
        return bytes((0xCC, value))
    if value <= 0xFFFF:
        return b"\xcd" + _U16.pack(value)
    return b"\xce" + _U32.pack(value)


class SnapshotEnvelope:
    """The envelope of one payload; ``encode`` gives one client's message bytes."""

    __slots__ = (
        "_compact_bare",
        "_compact_head",
        "_map_prefix",
        "base_id",
        "compressed",
        "id",
        "payload",
        "tick",
    )

    def __init__(
        self,
        snapshot_id: int,
        server_tick: int,
        base_id: int | None,
        compressed: bool,
        payload: bytes,
    ) -> None:
        if len(payload) > MAX_SNAPSHOT_PAYLOAD_BYTES:
            raise LocalProtocolError(
                f"payload must be bin of at most {MAX_SNAPSHOT_PAYLOAD_BYTES} bytes, "
                f"got {len(payload)}"
            )
        self.id, self.tick, self.base_id, self.payload = snapshot_id, server_tick, base_id, payload
        self.compressed = compressed
        self._map_prefix: bytes | None = None  # built on first use: compact clients never pay
        # Compact: marker, flags and fields up to last_input_seq, with bit 2 set (the head a
        # client's seq follows) and without (no seq); None when base_id > id (map instead).
        flags = FLAG_COMPRESSED if compressed else 0
        fields = leb128(snapshot_id) + leb128(server_tick)
        if base_id is not None:
            if base_id > snapshot_id:
                self._compact_head = self._compact_bare = None
                return
            flags |= FLAG_BASE
            fields += leb128(snapshot_id - base_id)
        self._compact_bare: bytes | None = bytes((COMPACT_MARKER, flags)) + fields
        self._compact_head: bytes | None = (
            bytes((COMPACT_MARKER, flags | FLAG_LAST_INPUT_SEQ)) + fields
        )

    def encode(self, last_input_seq: int | None, compact: bool = False) -> bytes:
        """This client's message: the map envelope, or the compact one when ``compact``."""
        head, tail = self.parts(last_input_seq, compact)
        return head + tail

    def parts(self, last_input_seq: int | None, compact: bool = False) -> tuple[bytes, bytes]:
        """``encode``'s bytes as ``(head, tail)``, ``head + tail == encode(...)``: a caller
        that frames the message joins them once (the payload is copied once)."""
        head = self._compact_head
        if compact and head is not None:
            if last_input_seq is None:
                return self._compact_bare, self.payload  # type: ignore[return-value]
            if 0x80 <= last_input_seq < 0x4000:  # two LEB128 bytes: most of a session
                seq = bytes((last_input_seq & 0x7F | 0x80, last_input_seq >> 7))
            else:
                seq = leb128(last_input_seq)
            return head + seq, self.payload
        prefix = self._map_prefix
        if prefix is None:
            prefix = self._map_prefix = self._build_map_prefix()
        if last_input_seq is None:
            return prefix, _MSGPACK_NIL
        return prefix, msgpack_uint(last_input_seq)

    def _build_map_prefix(self) -> bytes:
        wire = {
            "t": "Snapshot",
            "id": self.id,
            "server_tick": self.tick,
            "base_id": self.base_id,
            "compressed": self.compressed,
            "payload": self.payload,
            "last_input_seq": None,
        }
        # The map with nil last: drop that nil and each client appends its own value.
        return msgpack.packb(wire, use_bin_type=True)[:-1]  # type: ignore[no-any-return]


def is_compact(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` is a compact message (else it is a map envelope, or garbage)."""
    return len(data) > 0 and data[0] == COMPACT_MARKER


def _read_leb128(data: bytes, pos: int, max_bytes: int, limit: int, name: str) -> tuple[int, int]:
    value = 0
    shift = 0
    for i in range(max_bytes):
        if pos + i >= len(data):
            raise MalformedMessage(f"compact snapshot: {name} runs past the end")
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value > limit:
                raise MalformedMessage(f"compact snapshot: {name} out of range")
            return value, pos + i + 1
        shift += 7
    raise MalformedMessage(f"compact snapshot: {name} longer than {max_bytes} bytes")


def parse_compact(data: bytes) -> CompactSnapshotFields:
    """Fields of a compact Snapshot; raises ``MalformedMessage``/``UnknownMessageType``."""
    if len(data) < 2 or data[0] != COMPACT_MARKER:
        raise MalformedMessage("not a compact message")
    flags = data[1]
    if flags & ~_KNOWN_FLAGS:
        raise UnknownMessageType(f"unknown compact message kind/flags 0x{flags:02x}")
    snapshot_id, pos = _read_leb128(data, 2, 5, U32_MAX, "id")
    server_tick, pos = _read_leb128(data, pos, 10, U64_MAX, "server_tick")
    base_id = None
    if flags & FLAG_BASE:
        delta, pos = _read_leb128(data, pos, 5, U32_MAX, "base delta")
        if delta > snapshot_id:
            raise MalformedMessage("compact snapshot: base delta exceeds id")
        base_id = snapshot_id - delta
    last_input_seq = None
    if flags & FLAG_LAST_INPUT_SEQ:
        last_input_seq, pos = _read_leb128(data, pos, 5, U32_MAX, "last_input_seq")
    payload = bytes(data[pos:])
    if len(payload) > MAX_SNAPSHOT_PAYLOAD_BYTES:
        raise MalformedMessage("compact snapshot: payload over the limit")
    compressed = bool(flags & FLAG_COMPRESSED)
    return snapshot_id, server_tick, base_id, compressed, payload, last_input_seq
