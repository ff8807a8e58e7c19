"""Snapshot payload codec: a snapshot, as a delta against an acked base (or full), <-> bytes.

Operations: :func:`encode_payload` (delta or full, LZ4 frame when smaller) and
:func:`decode_payload` (the client side), built on the uncompressed :func:`encode_delta` /
:func:`decode_delta`. A full payload is a delta against the empty snapshot: every row a spawn.
The byte layout is specified in docs/protocol.md, section "Snapshot payload" (format v1).

Delta rules: rows are sorted by net id on both sides, so membership is one ``searchsorted``.
A row in the current view and not the base is a spawn (all fields, absolute codes); in the base
and not now a despawn (id only); in both and different an update: a changed-row bitmask over the
common rows, one change bitmask per field over the updated rows, then per field and code
component the zigzagged difference ``cur - base`` (mod ``2**bits``) bit-packed at the smallest
width that fits this payload's values. Column-major values pack and compress well.

Goals: no per-entity Python loop (the loops are over fields and code components); decode is
O(bytes + rows); no length from the wire is trusted: every count is checked against the bytes
that remain before anything is allocated, and every malformed input raises
:class:`~astranet.errors.SnapshotDecodeError`. A checksum mismatch raises :class:`DesyncError`.
Limits: MAX_DECODED_BYTES of decompressed payload; MAX_ENTITIES rows.
Benchmark: benchmarks/test_bench_replication.py, benchmarks/tick.py, benchmarks/cubes.py.
"""

from __future__ import annotations

import struct

import lz4.frame
import numpy as np

from astranet.ecs.schema import Schema
from astranet.ecs.store import MAX_ENTITIES
from astranet.errors import SnapshotDecodeError
from astranet.replication._bits import pack_bits, packed_size, unpack_bits
from astranet.replication._rows import rows_differ
from astranet.replication.snapshot import Snapshot, empty_snapshot

__all__ = [
    "FLAG_CHECKSUM",
    "FLAG_DELTA",
    "FORMAT_VERSION",
    "HEADER",
    "MAX_DECODED_BYTES",
    "DesyncError",
    "compress_payload",
    "decode_delta",
    "decode_payload",
    "decompress_payload",
    "encode_delta",
    "encode_payload",
]

FORMAT_VERSION = 1
FLAG_DELTA = 0x01  # relative to the snapshot named by the message's base_id
FLAG_CHECKSUM = 0x02  # a u32 CRC32 of the decoded state follows the header
_KNOWN_FLAGS = FLAG_DELTA | FLAG_CHECKSUM
# version u8, flags u8, field count u16, schema fingerprint u32,
# spawn count u32, despawn count u32, update count u32, total rows after apply u32.
HEADER = struct.Struct("<BBHIIIII")
_CRC = struct.Struct("<I")
# A full snapshot of 10k entities with a dozen fields is ~250 KiB; 16 MiB leaves room for 1M
# tiny entities while capping what an LZ4 bomb can make us allocate.
MAX_DECODED_BYTES = 16 << 20


class DesyncError(SnapshotDecodeError):
    """The decoded state's checksum differs from the server's: the replica has desynced."""


# -- encode -------------------------------------------------------------------------------


def _zigzag_delta(cur: np.ndarray, base: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """``cur - base`` wrapped to the signed ``bits``-bit range, zigzagged (always < 2**bits).

    ``cur``/``base`` are ``(m, k)`` codes, ``bits`` the ``(k,)`` widths: one pass per field.
    """
    full = np.left_shift(1, bits)
    diff = np.subtract(cur, base, dtype=np.int64)
    np.remainder(diff, full, out=diff)
    signed = np.where(diff >= full >> 1, diff - full, diff)
    return ((signed << 1) ^ (signed >> 63)).astype(np.uint32)


def _pack_mask(mask: np.ndarray) -> bytes:
    return np.packbits(mask, bitorder="little").tobytes()


def encode_delta(
    schema: Schema, current: Snapshot, base: Snapshot | None = None, *, checksum: bool = False
) -> bytes:
    """Uncompressed payload of ``current`` relative to ``base`` (None: a full payload).

    Both snapshots must already be the client's view (see :meth:`Snapshot.select`): the base
    as the client decoded it, the current one filtered by what it may see now.
    """
    flags = (FLAG_DELTA if base is not None else 0) | (FLAG_CHECKSUM if checksum else 0)
    base = base if base is not None else empty_snapshot(schema)
    cur_ids, base_ids = current.net_ids, base.net_ids
    if np.array_equal(cur_ids, base_ids):  # the common case: no structural change
        spawn_rows = np.zeros(0, dtype=np.intp)
        despawn_ids = cur_ids[:0]
        common_cur: np.ndarray | slice = slice(None)
        common_base: np.ndarray | slice = slice(None)
    else:
        pos = np.searchsorted(base_ids, cur_ids)
        in_base = np.zeros(len(cur_ids), dtype=bool)
        if len(base_ids):
            in_base = base_ids[np.minimum(pos, len(base_ids) - 1)] == cur_ids
        spawn_rows = np.flatnonzero(~in_base)
        common_cur, common_base = np.flatnonzero(in_base), pos[in_base]
        kept = np.zeros(len(base_ids), dtype=bool)
        kept[common_base] = True
        despawn_ids = base_ids[~kept]

    # Rows present in both, gathered once (views when nothing spawned or despawned). A field
    # whose code array *is* the base's (incremental capture reuses unchanged columns) has no
    # changed row: None, and no comparison at all.
    same_rows = isinstance(common_cur, slice)
    cur_common: list[np.ndarray] = []
    base_common: list[np.ndarray] = []
    field_changed: list[np.ndarray | None] = []
    for cur_codes, base_codes in zip(current.codes, base.codes, strict=True):
        if same_rows and cur_codes is base_codes:
            cur_common.append(cur_codes)
            base_common.append(base_codes)
            field_changed.append(None)
            continue
        now, then = cur_codes[common_cur], base_codes[common_base]
        cur_common.append(now)
        base_common.append(then)
        field_changed.append(rows_differ(now, then))
    masks = [m for m in field_changed if m is not None]
    any_changed = np.logical_or.reduce(masks) if masks else None
    updated = np.flatnonzero(any_changed) if any_changed is not None else despawn_ids[:0]

    parts = [
        HEADER.pack(
            FORMAT_VERSION,
            flags,
            len(schema),
            schema.fingerprint,
            len(spawn_rows),
            len(despawn_ids),
            len(updated),
            len(cur_ids),
        )
    ]
    if checksum:
        parts.append(_CRC.pack(current.checksum()))
    parts.append(np.ascontiguousarray(despawn_ids, dtype="<u4").tobytes())
    parts.append(np.ascontiguousarray(cur_ids[spawn_rows], dtype="<u4").tobytes())
    for field, codes in zip(schema.fields, current.codes, strict=True) if len(spawn_rows) else ():
        spawned = codes[spawn_rows]
        for comp, bits in enumerate(field.encoding.code_bits):
            parts.append(pack_bits(spawned[:, comp], bits))
    if len(updated):
        parts.append(_pack_mask(any_changed))
        no_change = bytes(packed_size(len(updated), 1))
        parts.extend(
            no_change if changed is None else _pack_mask(changed[updated])
            for changed in field_changed
        )
        for f, field in enumerate(schema.fields):
            changed = field_changed[f]
            if changed is None:
                continue
            rows = updated[changed[updated]]
            if len(rows) == 0:
                continue
            bits = np.array(field.encoding.code_bits, dtype=np.int64)
            zz = _zigzag_delta(cur_common[f][rows], base_common[f][rows], bits)
            for comp, top in enumerate(zz.max(axis=0).tolist()):
                width = int(top).bit_length()
                parts.append(bytes((width,)))
                parts.append(pack_bits(zz[:, comp], width))
    return b"".join(parts)


def compress_payload(raw: bytes) -> tuple[bytes, bool]:
    """LZ4-frame ``raw`` if that makes it smaller; returns ``(payload, compressed)``."""
    # No content size or checksums in the frame: the header and optional CRC cover integrity,
    # and at 60 Hz every saved byte counts (frame overhead is then 15 bytes).
    packed = lz4.frame.compress(raw, store_size=False)
    return (packed, True) if len(packed) < len(raw) else (raw, False)


def encode_payload(
    schema: Schema,
    current: Snapshot,
    base: Snapshot | None = None,
    *,
    checksum: bool = False,
    compress: bool = True,
) -> tuple[bytes, bool]:
    """The ``(payload, compressed)`` pair of a ``Snapshot`` message."""
    raw = encode_delta(schema, current, base, checksum=checksum)
    return compress_payload(raw) if compress else (raw, False)


# -- decode -------------------------------------------------------------------------------


class _Reader:
    """Bounds-checked cursor over the payload: every take() is checked before it is trusted."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = memoryview(buf)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise SnapshotDecodeError(f"payload truncated: need {n} bytes at {self.pos}")
        view = self.buf[self.pos : self.pos + n]
        self.pos += n
        return view

    def ids(self, n: int) -> np.ndarray:
        ids = np.frombuffer(self.take(4 * n), dtype="<u4").astype(np.uint32)
        if n and (ids[0] == 0 or np.any(ids[1:] <= ids[:-1])):
            raise SnapshotDecodeError("net ids must be non-zero and strictly increasing")
        return ids

    def mask(self, n: int) -> np.ndarray:
        return np.unpackbits(
            np.frombuffer(self.take(packed_size(n, 1)), np.uint8), count=n, bitorder="little"
        ).astype(bool)


def decompress_payload(payload: bytes, compressed: bool) -> bytes:
    """Undo :func:`compress_payload`, refusing frames that inflate past MAX_DECODED_BYTES."""
    if not compressed:
        if len(payload) > MAX_DECODED_BYTES:
            raise SnapshotDecodeError("payload exceeds MAX_DECODED_BYTES")
        return bytes(payload)
    decompressor = lz4.frame.LZ4FrameDecompressor()
    try:
        raw = decompressor.decompress(payload, max_length=MAX_DECODED_BYTES)
    except RuntimeError as exc:  # python-lz4 reports every frame error as RuntimeError
        raise SnapshotDecodeError(f"bad LZ4 frame: {exc}") from exc
    if not decompressor.eof or decompressor.unused_data:
        raise SnapshotDecodeError("LZ4 frame truncated, oversized or followed by junk")
    return raw


def _check_codes(schema: Schema, f: int, codes: np.ndarray) -> None:
    limits = np.asarray(schema.fields[f].encoding.max_codes, dtype=np.int64)
    if len(codes) and np.any(codes.astype(np.int64) > limits):
        raise SnapshotDecodeError(f"field {schema.fields[f].name} has out-of-range codes")


def decode_delta(
    schema: Schema, raw: bytes, base: Snapshot | None = None, *, snapshot_id: int = 0, tick: int = 0
) -> Snapshot:
    """Rebuild the state an uncompressed payload describes, applying it to ``base``."""
    reader = _Reader(raw)
    version, flags, n_fields, fingerprint, n_spawn, n_despawn, n_update, n_total = HEADER.unpack(
        reader.take(HEADER.size)
    )
    if version != FORMAT_VERSION or flags & ~_KNOWN_FLAGS:
        raise SnapshotDecodeError(f"unsupported payload version {version} / flags {flags:#x}")
    if n_fields != len(schema) or fingerprint != schema.fingerprint:
        raise SnapshotDecodeError("payload was encoded for another replication schema")
    if n_total > MAX_ENTITIES or n_spawn > n_total:
        raise SnapshotDecodeError(f"declared row counts out of range ({n_spawn}/{n_total})")
    if flags & FLAG_DELTA:
        if base is None:
            raise SnapshotDecodeError("delta payload but its base snapshot is unknown")
    elif n_despawn or n_update:
        raise SnapshotDecodeError("a full payload cannot despawn or update")
    else:
        base = empty_snapshot(schema)
    expected_crc = _CRC.unpack(reader.take(4))[0] if flags & FLAG_CHECKSUM else None

    despawn_ids = reader.ids(n_despawn)
    spawn_ids = reader.ids(n_spawn)
    base_ids = base.net_ids
    keep = np.ones(len(base_ids), dtype=bool)
    if n_despawn:
        pos = np.searchsorted(base_ids, despawn_ids)
        if (
            len(base_ids) == 0
            or np.any(pos >= len(base_ids))
            or np.any(base_ids[np.minimum(pos, len(base_ids) - 1)] != despawn_ids)
        ):
            raise SnapshotDecodeError("despawn of a net id that is not in the base")
        keep[pos] = False
    common_ids = base_ids[keep]
    if len(common_ids) + n_spawn != n_total or n_update > len(common_ids):
        raise SnapshotDecodeError("row counts do not add up")
    if n_spawn and len(common_ids):
        pos = np.minimum(np.searchsorted(common_ids, spawn_ids), len(common_ids) - 1)
        if np.any(common_ids[pos] == spawn_ids):
            raise SnapshotDecodeError("spawn of a net id that is already present")

    spawn_codes = []
    for f, field in enumerate(schema.fields):
        comps = [
            unpack_bits(reader.take(packed_size(n_spawn, bits)), n_spawn, bits)
            for bits in field.encoding.code_bits
        ]
        codes = np.stack(comps, axis=1).astype(field.encoding.code_dtype)
        _check_codes(schema, f, codes)
        spawn_codes.append(codes)

    common_codes = [b[keep] for b in base.codes]  # copies: the base stays intact
    if n_update:
        changed = reader.mask(len(common_ids))
        if int(changed.sum()) != n_update:
            raise SnapshotDecodeError("changed-row mask disagrees with the update count")
        updated = np.flatnonzero(changed)
        field_masks = [reader.mask(n_update) for _ in schema.fields]
        for f, field in enumerate(schema.fields):
            rows = updated[field_masks[f]]
            if len(rows) == 0:
                continue
            target = common_codes[f]
            for comp, bits in enumerate(field.encoding.code_bits):
                width = reader.take(1)[0]
                if width > bits:
                    raise SnapshotDecodeError(f"delta width {width} exceeds {bits} bits")
                zz = unpack_bits(reader.take(packed_size(len(rows), width)), len(rows), width)
                zz64 = zz.astype(np.int64)
                signed = (zz64 >> 1) ^ -(zz64 & 1)
                full = 1 << bits
                target[rows, comp] = (target[rows, comp].astype(np.int64) + signed) % full
            _check_codes(schema, f, target[rows])
    if reader.pos != len(reader.buf):
        raise SnapshotDecodeError(f"{len(reader.buf) - reader.pos} trailing bytes in payload")

    net_ids = np.concatenate([common_ids, spawn_ids]).astype(np.uint32)
    codes = [np.concatenate([c, s]) for c, s in zip(common_codes, spawn_codes, strict=True)]
    if n_spawn and len(common_ids) and spawn_ids[0] < common_ids[-1]:
        order = np.argsort(net_ids, kind="stable")  # spawns interleave: recycled ids
        net_ids = net_ids[order]
        codes = [c[order] for c in codes]
    for array in (net_ids, *codes):
        array.flags.writeable = False
    result = Snapshot(snapshot_id, tick, net_ids, tuple(codes))
    if expected_crc is not None and result.checksum() != expected_crc:
        raise DesyncError(f"state checksum mismatch at snapshot {snapshot_id}")
    return result


def decode_payload(
    schema: Schema,
    payload: bytes,
    compressed: bool,
    base: Snapshot | None = None,
    *,
    snapshot_id: int = 0,
    tick: int = 0,
) -> Snapshot:
    """Decode a ``Snapshot`` message's payload against ``base`` (the snapshot of ``base_id``)."""
    raw = decompress_payload(payload, compressed)
    return decode_delta(schema, raw, base, snapshot_id=snapshot_id, tick=tick)
