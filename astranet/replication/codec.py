"""Snapshot payload codec: a snapshot, as a delta against an acked base (or full), <-> bytes.

Operations: :func:`encode_payload` (delta or full, LZ4 frame when smaller) and
:func:`decode_payload` (the client side), built on the uncompressed :func:`encode_delta` /
:func:`decode_delta`. A full payload is a delta against the empty snapshot: every row a spawn.
The byte layout is specified in docs/protocol.md, section "Snapshot payload" (format v2).

Delta rules: rows are sorted by net id on both sides, so membership is one ``searchsorted``.
A row in the current view and not the base is a spawn (all fields, absolute codes); in the base
and not now a despawn (id only); in both and different an update: a changed-row bitmask over the
common rows (or, when fewer bytes, the list of their gaps), one change bitmask per field over
the updated rows (none when every updated row changed in every field), then per field and code
component the zigzagged difference ``cur - base`` (mod ``2**bits``) bit-packed at the smallest
width that fits this payload's values. Column-major values pack and compress well. The header is
varints; only a full payload names the schema (a delta's base was checked when it arrived).

Goals: no per-entity Python loop (the loops are over fields and code components); decode is
O(bytes + rows); no length from the wire is trusted: every count is checked against the bytes
that remain before anything is allocated, and every malformed input raises
:class:`~astranet.errors.SnapshotDecodeError`. A checksum mismatch raises :class:`DesyncError`.
Limits: MAX_DECODED_BYTES of decompressed payload; MAX_ENTITIES rows.
Benchmark: benchmarks/test_bench_replication.py, benchmarks/tick.py, benchmarks/cubes.py.
"""

from __future__ import annotations

import functools
import itertools
import struct
from collections.abc import Callable
from typing import NamedTuple

import lz4.frame
import numpy as np

from astranet.ecs.schema import Schema
from astranet.ecs.store import MAX_ENTITIES
from astranet.errors import SnapshotDecodeError
from astranet.replication._bits import (
    SMALL_RUN,
    fitting_run,
    pack_bits,
    packed_size,
    unpack_bits,
)
from astranet.replication._rows import rows_differ, same_ids
from astranet.replication.snapshot import Snapshot, empty_snapshot
from astranet.varint import leb128

__all__ = [
    "FLAG_ALL_FIELDS",
    "FLAG_CHECKSUM",
    "FLAG_DELTA",
    "FLAG_PREDICTED",
    "FLAG_ROW_LIST",
    "FLAG_STRUCTURE",
    "FORMAT_VERSION",
    "HEADER_BYTES_ESTIMATE",
    "MAX_DECODED_BYTES",
    "MAX_PREDICTION_TICKS",
    "WIDTH_PREDICTED",
    "DesyncError",
    "PayloadCounts",
    "can_predict",
    "compress_payload",
    "decode_delta",
    "decode_payload",
    "decompress_payload",
    "encode_delta",
    "encode_payload",
    "payload_counts",
]

FORMAT_VERSION = 2
FLAG_DELTA = 0x01  # relative to the snapshot named by the message's base_id
FLAG_CHECKSUM = 0x02  # a u32 CRC32 of the decoded state follows the counts
FLAG_STRUCTURE = 0x04  # delta only: spawn and despawn counts are written (else both 0)
FLAG_ROW_LIST = 0x08  # the changed rows are a packed gap list, not a bitmask
FLAG_ALL_FIELDS = 0x10  # no field masks: every changed row changed in every field
FLAG_PREDICTED = 0x20  # a varint names a prediction snapshot; width bytes may say "predicted"
_KNOWN_FLAGS = (
    FLAG_DELTA | FLAG_CHECKSUM | FLAG_STRUCTURE | FLAG_ROW_LIST | FLAG_ALL_FIELDS | FLAG_PREDICTED
)
_DELTA_ONLY = FLAG_STRUCTURE | FLAG_ROW_LIST | FLAG_ALL_FIELDS | FLAG_PREDICTED
#: In a width byte: this component's deltas are against the prediction, not the base.
WIDTH_PREDICTED = 0x40
_WIDTH_BITS = 0x3F
#: Tick spans (base - prev, current - base) a prediction may extrapolate over: keeps
#: (b - a) * span below 2**53, exact in a JS double.
MAX_PREDICTION_TICKS = 1 << 16
_U32 = struct.Struct("<I")
#: A typical delta's header (version, flags, one-byte update count) plus slack for larger counts:
#: the fixed cost a byte-budget planner should assume (astranet.replication.interest).
HEADER_BYTES_ESTIMATE = 4
_MAX_WIDTH = 32
_WIDTH_BYTES = [bytes((width,)) for width in range(256)]  # made once, not per run
_NO_ROWS = np.zeros(0, dtype=np.intp)  # the spawn rows of a delta without structural change
_NO_ROWS.flags.writeable = False
# A full snapshot of 10k entities with a dozen fields is ~250 KiB; 16 MiB leaves room for 1M
# tiny entities while capping what an LZ4 bomb can make us allocate.
MAX_DECODED_BYTES = 16 << 20


class DesyncError(SnapshotDecodeError):
    """The decoded state's checksum differs from the server's: the replica has desynced."""


# -- encode -------------------------------------------------------------------------------


@functools.cache
def _zigzag_shifts(code_bits: tuple[int, ...]) -> tuple[np.ndarray | int, np.ndarray | int]:
    """``(64 - bits, 63 - bits)`` per code component as int64, or as Python ints when every
    component has the same width (a scalar operand: numpy's fast loop)."""
    if len(set(code_bits)) == 1:
        return 64 - code_bits[0], 63 - code_bits[0]
    bits = np.array(code_bits, dtype=np.int64)
    return 64 - bits, 63 - bits


def can_predict(prev: Snapshot, base: Snapshot, tick: int) -> bool:
    """Whether ``prev`` may extrapolate ``base`` to ``tick`` (the rule decoders check too)."""
    return (
        prev.id < base.id
        and prev.tick < base.tick <= tick
        and base.tick - prev.tick <= MAX_PREDICTION_TICKS
        and tick - base.tick <= MAX_PREDICTION_TICKS
    )


def _extrapolation(
    base_codes: np.ndarray,
    prev_codes: np.ndarray,
    has_prev: np.ndarray | None,
    ahead: int,
    span: int,
) -> np.ndarray:
    """How far constant velocity carries each code past the base (docs/protocol.md):
    ``floor((b - a) * ahead / span)`` as int64, 0 where the row was not in the prediction
    snapshot (``has_prev`` False; None: every row was). The prediction is ``b + this``,
    not wrapped: deltas against it are taken mod ``2**bits``."""
    velocity = np.subtract(base_codes, prev_codes, dtype=np.int64)
    if has_prev is not None:
        velocity[~has_prev] = 0
    if ahead != span:
        velocity *= ahead
        velocity //= span
    return velocity


def _zigzag_signed(diff: np.ndarray, code_bits: tuple[int, ...]) -> np.ndarray:
    """Wrap int64 differences to each component's signed range and zigzag them (in place).

    Four numpy calls: shifting the low ``bits`` bits to the top of the word leaves the wrapped
    value ``w`` there (sign included), and ``(w << 1) ^ (w >> 63)`` is then one arithmetic
    shift right by ``63 - bits`` (``w << 1``; the bits below were zeros) and the sign word.
    """
    up, down = _zigzag_shifts(code_bits)
    diff <<= up
    sign = diff >> 63
    diff >>= down
    diff ^= sign
    return diff


def _widths(zz: np.ndarray) -> list[int]:
    """Bit width of each column of zigzagged deltas ``(m, k)``: its largest value's length.
    The ufunc's reduce directly (``ndarray.max`` goes through a Python wrapper)."""
    return [int(top).bit_length() for top in np.maximum.reduce(zz, axis=0).tolist()]


def _align(ids: np.ndarray, prev_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``ids`` in ``prev_ids`` (both ascending) and whether each is there."""
    if len(prev_ids) == 0:
        return np.zeros(len(ids), dtype=np.intp), np.zeros(len(ids), dtype=bool)
    pos = np.minimum(np.searchsorted(prev_ids, ids), len(prev_ids) - 1)
    return pos, prev_ids[pos] == ids


def _pack_mask(mask: np.ndarray) -> bytes:
    return np.packbits(mask, bitorder="little").tobytes()


def _changed_rows(changed: np.ndarray, updated: np.ndarray) -> tuple[bytes, int]:
    """The changed-row set in its smaller form: ``(bytes, FLAG_ROW_LIST or 0)``.

    Bitmask: one bit per common row. Row list: a width byte, then each changed row's gap to the
    previous one (minus one; the first is its index) packed at that width.
    """
    mask_size = packed_size(len(changed), 1)
    n = len(updated)
    if n >= 8 * (mask_size - 1):  # even 1-bit gaps would not be smaller
        return _pack_mask(changed), 0
    if n <= SMALL_RUN:  # Python ints: numpy's per-call overhead dominates a short list
        gaps = []
        previous = -1  # the first gap is the first row's index
        for row in updated.tolist():  # a plain loop: no generator frame per changed row
            gaps.append(row - previous - 1)
            previous = row
        width = max(gaps).bit_length()
        packed = _pack_fitting(gaps, width)
    else:
        gap_array = np.empty(n, dtype=np.int64)
        gap_array[0] = updated[0]
        np.subtract(updated[1:], updated[:-1], out=gap_array[1:])
        gap_array[1:] -= 1
        width = int(gap_array.max()).bit_length()
        packed = pack_bits(gap_array, width)
    if 1 + len(packed) < mask_size:
        return bytes((width,)) + packed, FLAG_ROW_LIST
    return _pack_mask(changed), 0


class _Layout(NamedTuple):
    """Per-schema constants of the small-room encoder: the code components of every field
    side by side, as the columns of one ``(n, K)`` int64 matrix."""

    comp_bits: tuple[int, ...]  # code bits of each of the K columns
    field_comps: tuple[range, ...]  # each field's columns
    field_starts: np.ndarray | None  # first column of each field (None: one column per field)


@functools.cache
def _layout(schema: Schema) -> _Layout:
    comp_bits: list[int] = []
    field_comps: list[range] = []
    for spec in schema.fields:
        start = len(comp_bits)
        comp_bits.extend(spec.encoding.code_bits)
        field_comps.append(range(start, len(comp_bits)))
    one_each = len(comp_bits) == len(field_comps)
    starts = None if one_each else np.array([r.start for r in field_comps], dtype=np.intp)
    return _Layout(tuple(comp_bits), tuple(field_comps), starts)


def _wide_codes(snapshot: Snapshot) -> np.ndarray:
    """The snapshot's codes as one int64 ``(n, K)`` matrix, built once per snapshot (a room's
    snapshot is encoded as the current state, then reused as the next ticks' delta base)."""
    wide = snapshot.derived.get("wide")
    if wide is None:
        wide = snapshot.derived["wide"] = np.concatenate(snapshot.codes, axis=1, dtype=np.int64)
    return wide


def _pack_ints(values: list[int], width: int) -> bytes:
    """:func:`~astranet.replication._bits.pack_bits` of Python ints (same bytes): the small
    encoder converts each matrix to lists once instead of calling numpy per run."""
    if width == 0:
        return b""
    mask = (1 << width) - 1
    run = shift = 0
    for value in values:
        run |= (value & mask) << shift
        shift += width
    return run.to_bytes((shift + 7) >> 3, "little")


def _pack_fitting(values: list[int], width: int) -> bytes:
    """:func:`_pack_ints` of values known to fit ``width`` bits (zigzagged deltas packed at
    their largest one's bit length): Horner's rule from the last value, two operations per
    value instead of four and no mask."""
    return fitting_run(values, width).to_bytes((len(values) * width + 7) >> 3, "little")


#: Up to this many rows (current and base) a delta without prediction is encoded from one
#: int64 matrix per snapshot (:func:`_encode_small`): a few dozen numpy calls in all instead of
#: a dozen per field. Above it the per-field path wins, which also skips the comparison of
#: columns incremental capture shares with the base (a 10,000-entity room's idle fields).
SMALL_ROWS = 64
#: ...and up to this many when two or more fields' code arrays differ from the base's (not
#: the same array, as incremental capture keeps unchanged ones): the per-field path's cost
#: grows with such fields, the matrix's with rows. Measured on coop rooms (7 fields, most of
#: them new arrays after any spawn), per field -> matrix: 100 drones (~115 rows) 111 -> 85 us,
#: 200 (~210 rows) 140 -> 121 us, 250 (~260 rows) about even, 350 matrix slower; a cubes room
#: (one field, a tenth of its rows moving) is faster per field past 64 rows.
SMALL_ROWS_MANY_FIELDS = 240


def _match_ids(
    cur_ids: np.ndarray, base_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of two id-sorted snapshots matched by net id: ``(spawn_rows, common_cur,
    common_base, despawn_ids)`` -- current rows not in the base, the rows present in both
    (current and base indices, in the same order) and the base ids no longer present.

    A spawn or a despawn alone (a shot fired, a drone down: most structural changes of a
    small room) skips the other side's index arrays."""
    n_base = len(base_ids)
    if n_base == 0:
        return np.arange(len(cur_ids)), _NO_ROWS, _NO_ROWS, base_ids[:0]
    pos = np.searchsorted(base_ids, cur_ids)
    in_base = base_ids.take(pos, mode="clip") == cur_ids  # clip: pos may be n_base
    common_cur = in_base.nonzero()[0]
    common_base = pos[common_cur]
    if len(common_cur) == len(cur_ids):
        spawn_rows = _NO_ROWS
    else:
        spawn_rows = np.logical_not(in_base).nonzero()[0]
    if len(common_base) == n_base:
        despawn_ids = base_ids[:0]
    else:
        gone = np.ones(n_base, dtype=bool)
        gone[common_base] = False
        despawn_ids = base_ids[gone]
    return spawn_rows, common_cur, common_base, despawn_ids


def _new_arrays(current: Snapshot, base: Snapshot) -> int:
    """How many fields' code arrays are not the base's own (at most 2 counted)."""
    count = 0
    for now, then in zip(current.codes, base.codes, strict=True):
        if now is not then:
            count += 1
            if count == 2:
                break
    return count


def _encode_small(
    schema: Schema, current: Snapshot, base: Snapshot, flags: int, checksum: bool
) -> bytes:
    """:func:`encode_delta` without prediction, for small snapshots: the same bytes.

    Every field's code components are the columns of one int64 matrix, so the common rows'
    differences, their zigzag, the changed-row set, the per-field change masks and the widths
    are one numpy call each; runs are packed from Python lists (``_pack_ints``). A row is
    changed where its zigzagged delta is non-zero (zigzag maps only 0 to 0), and an unchanged
    row's zeros do not move a column's maximum, so nothing is gathered before the zigzag.
    """
    layout = _layout(schema)
    cur_ids, base_ids = current.net_ids, base.net_ids
    cur_wide, base_wide = _wide_codes(current), _wide_codes(base)
    if same_ids(cur_ids, base_ids):
        n_spawn = n_despawn = 0
        zz = np.subtract(cur_wide, base_wide)
    else:
        spawn_rows, common_cur, common_base, despawn_ids = _match_ids(cur_ids, base_ids)
        n_spawn, n_despawn = len(spawn_rows), len(despawn_ids)
        # Without spawns every current row is common (in order); without despawns every
        # base row is.
        now = cur_wide if not n_spawn else cur_wide[common_cur]
        then = base_wide if not n_despawn else base_wide[common_base]
        zz = np.subtract(now, then)
    n_update = 0
    if len(zz):
        _zigzag_signed(zz, layout.comp_bits)
        # Changed (row, field): any of the field's components differs.
        changed = zz != 0
        if layout.field_starts is not None:
            changed = np.logical_or.reduceat(changed, layout.field_starts, axis=1)
        any_changed = np.logical_or.reduce(changed, axis=1)
        updated = any_changed.nonzero()[0]
        n_update = len(updated)

    if flags & FLAG_DELTA:
        if n_spawn or n_despawn:
            flags |= FLAG_STRUCTURE
            counts = leb128(n_spawn) + leb128(n_despawn) + leb128(n_update)
        else:
            counts = leb128(n_update)
    else:
        counts = leb128(len(schema)) + _U32.pack(schema.fingerprint) + leb128(n_spawn)
    parts = [b"", counts]  # the version and flags byte is set last
    if checksum:
        parts.append(_U32.pack(current.checksum()))
    if n_despawn:
        parts.append(np.ascontiguousarray(despawn_ids, dtype="<u4").tobytes())
    if n_spawn:
        parts.append(np.ascontiguousarray(cur_ids[spawn_rows], dtype="<u4").tobytes())
        spawned = cur_wide[spawn_rows].T.tolist()  # one list per code component
        parts.extend(map(_pack_ints, spawned, layout.comp_bits))
    if n_update:
        row_set, row_flag = _changed_rows(any_changed, updated)
        flags |= row_flag
        parts.append(row_set)
        every_row = n_update == len(zz)  # common in a busy room: no gathers
        per_field = changed if every_row else changed[updated]  # (u, F) bool
        widths = [int(top).bit_length() for top in np.maximum.reduce(zz, axis=0).tolist()]
        deltas = zz if every_row else zz[updated]  # (u, K): the changed rows' deltas
        # Short runs are packed from Python ints (one conversion for all), long ones by
        # pack_bits' numpy path, whose cost does not grow with the values.
        columns = deltas.T.tolist() if n_update <= SMALL_RUN else None
        if np.logical_and.reduce(per_field, axis=None):
            flags |= FLAG_ALL_FIELDS
            field_rows = [n_update] * len(layout.field_comps)
        else:
            # One mask per field, each packed_size(u, 1) bytes: one packbits over the rows
            # of the transposed matrix is their concatenation.
            parts.append(np.packbits(per_field.T, axis=1, bitorder="little").tobytes())
            field_masks = per_field.T.tolist()
            field_rows = [mask.count(True) for mask in field_masks]  # changed rows per field
        # Every run (a width byte, then its values) starts on a byte: all of them are one
        # Python int, section by section, converted once. Values fit their width: Horner's
        # rule from the last value, no mask.
        body = offset = 0
        for f, comps in enumerate(layout.field_comps):
            count = field_rows[f]
            if not count:
                continue
            keep = None if count == n_update else field_masks[f]
            rows = None  # the field's own rows of ``deltas``, for the numpy packer
            if columns is None:
                rows = deltas if keep is None else deltas[per_field[:, f]]
            for comp in comps:
                width = widths[comp]
                packed = 0
                if width and rows is not None:
                    packed = int.from_bytes(pack_bits(rows[:, comp], width), "little")
                elif width and columns is not None:
                    values = columns[comp]
                    if keep is not None:
                        values = list(itertools.compress(values, keep))
                    packed = fitting_run(values, width)
                body |= (width | (packed << 8)) << offset
                offset += 8 + ((count * width + 7) & ~7)
        parts.append(body.to_bytes(offset >> 3, "little"))
    parts[0] = bytes((FORMAT_VERSION, flags))
    return b"".join(parts)


def encode_delta(
    schema: Schema,
    current: Snapshot,
    base: Snapshot | None = None,
    *,
    checksum: bool = False,
    prev: Snapshot | None = None,
) -> bytes:
    """Uncompressed payload of ``current`` relative to ``base`` (None: a full payload).

    Both snapshots must already be the client's view (see :meth:`Snapshot.select`): the base
    as the client decoded it, the current one filtered by what it may see now. ``prev``, an
    older snapshot the client also acked (its view too), lets changed rows be sent against a
    constant-velocity prediction from ``prev`` and ``base``, per code component when smaller.
    """
    flags = (FLAG_DELTA if base is not None else 0) | (FLAG_CHECKSUM if checksum else 0)
    base = base if base is not None else empty_snapshot(schema)
    no_prediction = prev is None or not flags & FLAG_DELTA
    if no_prediction:
        rows = max(len(current), len(base))
        if rows <= SMALL_ROWS or (
            rows <= SMALL_ROWS_MANY_FIELDS and _new_arrays(current, base) >= 2
        ):
            return _encode_small(schema, current, base, flags, checksum)
    cur_ids, base_ids = current.net_ids, base.net_ids
    # The common case: no structural change (incremental capture shares the ids array then).
    if cur_ids is base_ids or np.array_equal(cur_ids, base_ids):
        spawn_rows = _NO_ROWS
        despawn_ids = cur_ids[:0]
        common_cur: np.ndarray | slice = slice(None)
        common_base: np.ndarray | slice = slice(None)
    else:
        spawn_rows, common_cur, common_base, despawn_ids = _match_ids(cur_ids, base_ids)

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
    # One mask (one field changed, the common case) is its own union: no list -> array call.
    any_changed = (masks[0] if len(masks) == 1 else np.logical_or.reduce(masks)) if masks else None
    # ndarray.nonzero of the 1-D mask: np.flatnonzero adds a Python wrapper and a ravel.
    updated = any_changed.nonzero()[0] if any_changed is not None else despawn_ids[:0]

    n_spawn, n_despawn, n_update = len(spawn_rows), len(despawn_ids), len(updated)
    predict = None
    if (
        prev is not None
        and flags & FLAG_DELTA
        and n_update
        and len(prev)
        and can_predict(prev, base, current.tick)
    ):
        # Where each changed row was in prev (by net id), and the two tick spans.
        base_rows = updated if same_rows else np.asarray(common_base)[updated]
        has_prev: np.ndarray | None = None  # None: every changed row is in prev
        if prev.net_ids is base_ids or np.array_equal(prev.net_ids, base_ids):
            prev_rows = base_rows
        else:
            prev_rows, has_prev = _align(base_ids[base_rows], prev.net_ids)
        predict = (prev_rows, has_prev, current.tick - base.tick, base.tick - prev.tick)
    if flags & FLAG_DELTA:
        if n_spawn or n_despawn:
            flags |= FLAG_STRUCTURE
            counts = leb128(n_spawn) + leb128(n_despawn) + leb128(n_update)
        else:
            counts = leb128(n_update)
        if predict is not None and prev is not None:
            counts_plain, counts = counts, counts + leb128(base.id - prev.id)
    else:
        counts = leb128(len(schema)) + _U32.pack(schema.fingerprint) + leb128(n_spawn)
    row_set = b""
    field_masks: list[bytes] = []
    if n_update:
        row_set, row_flag = _changed_rows(any_changed, updated)
        flags |= row_flag
        per_field: list[np.ndarray | slice | None] = [slice(None)]  # one field: every row
        if len(field_changed) > 1:
            per_field = [None if c is None else c[updated] for c in field_changed]
        if all(c is not None and c.all() for c in per_field if not isinstance(c, slice)):
            flags |= FLAG_ALL_FIELDS
            per_field = [slice(None)] * len(field_changed)
        else:
            no_change = bytes(packed_size(n_update, 1))
            field_masks = [no_change if c is None else _pack_mask(c) for c in per_field]
    parts = [bytes((FORMAT_VERSION, flags | (FLAG_PREDICTED if predict else 0))), counts]
    if checksum:
        parts.append(_U32.pack(current.checksum()))
    # No numpy calls for the empty id lists of a steady-state delta.
    if n_despawn:
        parts.append(np.ascontiguousarray(despawn_ids, dtype="<u4").tobytes())
    if n_spawn:
        parts.append(np.ascontiguousarray(cur_ids[spawn_rows], dtype="<u4").tobytes())
    for field, codes in zip(schema.fields, current.codes, strict=True) if len(spawn_rows) else ():
        spawned = codes[spawn_rows]
        for comp, bits in enumerate(field.encoding.code_bits):
            parts.append(pack_bits(spawned[:, comp], bits))
    if n_update:
        parts.append(row_set)
        parts.extend(field_masks)
        # Per code component: (plain run, predicted run or None); prediction is used for the
        # components where it is narrower, if that saves more than its varint costs.
        # Per field and code component: the plain deltas and, when predicting, the deltas
        # against the prediction, with their widths; packed below once the choice is made.
        runs: list[tuple[np.ndarray, list[int], np.ndarray | None, list[int] | None]] = []
        saved = 0
        for f, field in enumerate(schema.fields):
            if field_changed[f] is None:
                continue
            rows = updated[per_field[f]]
            if len(rows) == 0:
                continue
            code_bits = field.encoding.code_bits
            then = base_common[f][rows]
            diff = np.subtract(cur_common[f][rows], then, dtype=np.int64)
            guessed = None
            guessed_widths = None
            if predict is not None and prev is not None:
                prev_rows, has_prev, ahead, span = predict
                pick = per_field[f]
                has = None if has_prev is None else has_prev[pick]
                ahead_by = _extrapolation(then, prev.codes[f][prev_rows[pick]], has, ahead, span)
                guessed = _zigzag_signed(diff - ahead_by, code_bits)
                guessed_widths = _widths(guessed)
            zz = _zigzag_signed(diff, code_bits)
            widths = _widths(zz)
            if guessed_widths is not None:
                m = len(rows)
                saved += sum(
                    packed_size(m, w) - packed_size(m, g)
                    for w, g in zip(widths, guessed_widths, strict=True)
                    if g < w
                )
            runs.append((zz, widths, guessed, guessed_widths))
        # Prediction only where narrower, and only if that saves more than its lag varint.
        predicted = predict is not None and saved > len(counts) - len(counts_plain)
        for zz, widths, guessed, guessed_widths in runs:
            # A short run is packed from Python ints (the values fit their width), all of a
            # field's components from one conversion instead of a slice and a list each.
            columns = zz.T.tolist() if len(zz) <= SMALL_RUN else None
            for comp, width in enumerate(widths):
                if predicted and guessed is not None and guessed_widths is not None:
                    narrow = guessed_widths[comp]
                    if narrow < width:
                        parts.append(bytes((narrow | WIDTH_PREDICTED,)))
                        parts.append(pack_bits(guessed[:, comp], narrow))
                        continue
                parts.append(_WIDTH_BYTES[width])
                if columns is None:
                    parts.append(pack_bits(zz[:, comp], width))
                elif width:
                    parts.append(_pack_fitting(columns[comp], width))
        if predict is not None and not predicted:  # not worth its byte: no prediction at all
            parts[0], parts[1] = bytes((FORMAT_VERSION, flags)), counts_plain
    return b"".join(parts)


#: Payloads this short never shrink in an LZ4 frame (no content size, no checksums): 7 header
#: bytes, a 4-byte block size and a 4-byte end mark, and a compressed block of at least 10
#: (a token, a literal, a 2-byte offset, then a token and the 5 literals a block ends with).
#: A static room's "no update" delta is 3 bytes: no call to lz4 for it.
_NEVER_SMALLER_FRAMED = 25


def compress_payload(raw: bytes) -> tuple[bytes, bool]:
    """LZ4-frame ``raw`` if that makes it smaller; returns ``(payload, compressed)``."""
    # No content size or checksums in the frame: the header and optional CRC cover integrity,
    # and at 60 Hz every saved byte counts (frame overhead is then 15 bytes).
    if len(raw) <= _NEVER_SMALLER_FRAMED:
        return raw, False
    packed = lz4.frame.compress(raw, store_size=False)
    return (packed, True) if len(packed) < len(raw) else (raw, False)


def encode_payload(
    schema: Schema,
    current: Snapshot,
    base: Snapshot | None = None,
    *,
    checksum: bool = False,
    compress: bool = True,
    prev: Snapshot | None = None,
) -> tuple[bytes, bool]:
    """The ``(payload, compressed)`` pair of a ``Snapshot`` message."""
    raw = encode_delta(schema, current, base, checksum=checksum, prev=prev)
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

    def uleb(self, limit: int = 0xFFFFFFFF) -> int:
        """An unsigned LEB128 value; overlong forms and values above ``limit`` are malformed."""
        value = shift = 0
        while True:
            if self.pos >= len(self.buf):
                raise SnapshotDecodeError(f"payload truncated: varint at {self.pos}")
            byte = self.buf[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift > 28:
                raise SnapshotDecodeError("varint longer than 5 bytes")
        if (byte == 0 and shift) or value > limit:
            raise SnapshotDecodeError(f"varint {value} overlong or above {limit}")
        return value

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


def _read_header(schema: Schema, reader: _Reader) -> tuple[int, int, int, int, int]:
    """Flags, the three counts and the prediction lag (0: none), validated against the schema."""
    version, flags = reader.take(2)
    if version != FORMAT_VERSION or flags & ~_KNOWN_FLAGS:
        raise SnapshotDecodeError(f"unsupported payload version {version} / flags {flags:#x}")
    if flags & FLAG_DELTA:
        n_spawn = n_despawn = 0
        if flags & FLAG_STRUCTURE:
            n_spawn, n_despawn = reader.uleb(MAX_ENTITIES), reader.uleb(MAX_ENTITIES)
        n_update = reader.uleb(MAX_ENTITIES)
        if not n_update and flags & (FLAG_ROW_LIST | FLAG_ALL_FIELDS | FLAG_PREDICTED):
            raise SnapshotDecodeError("row-set flags on a payload without updates")
        lag = reader.uleb() if flags & FLAG_PREDICTED else 0
        if flags & FLAG_PREDICTED and lag == 0:
            raise SnapshotDecodeError("prediction snapshot lag must be >= 1")
        return flags, n_spawn, n_despawn, n_update, lag
    if flags & _DELTA_ONLY:
        raise SnapshotDecodeError(f"delta-only flags {flags:#x} on a full payload")
    n_fields = reader.uleb()
    (fingerprint,) = _U32.unpack(reader.take(4))
    if n_fields != len(schema) or fingerprint != schema.fingerprint:
        raise SnapshotDecodeError("payload was encoded for another replication schema")
    return flags, reader.uleb(MAX_ENTITIES), 0, 0, 0


def _read_changed_rows(reader: _Reader, flags: int, n_common: int, n_update: int) -> np.ndarray:
    """Indices (into the surviving base rows) of the ``n_update`` changed rows, ascending."""
    if not flags & FLAG_ROW_LIST:
        changed = reader.mask(n_common)
        if int(changed.sum()) != n_update:
            raise SnapshotDecodeError("changed-row mask disagrees with the update count")
        return np.flatnonzero(changed)
    width = reader.take(1)[0]
    if width > _MAX_WIDTH:
        raise SnapshotDecodeError(f"row-list width {width} exceeds {_MAX_WIDTH} bits")
    gaps = unpack_bits(reader.take(packed_size(n_update, width)), n_update, width)
    rows = np.cumsum(gaps.astype(np.int64) + 1) - 1
    if rows[-1] >= n_common:
        raise SnapshotDecodeError("changed row beyond the surviving base rows")
    return rows


class PayloadCounts(NamedTuple):
    """What a raw payload's header says (see :func:`payload_counts`)."""

    n_spawn: int
    n_despawn: int
    n_update: int
    header_bytes: int  # version, flags, counts (and schema, checksum) before the ids


def payload_counts(schema: Schema, raw: bytes) -> PayloadCounts:
    """Parse just the header of an uncompressed payload (raises SnapshotDecodeError)."""
    reader = _Reader(raw)
    flags, n_spawn, n_despawn, n_update, _ = _read_header(schema, reader)
    header = reader.pos + (4 if flags & FLAG_CHECKSUM else 0)
    return PayloadCounts(n_spawn, n_despawn, n_update, header)


def decode_delta(
    schema: Schema,
    raw: bytes,
    base: Snapshot | None = None,
    *,
    snapshot_id: int = 0,
    tick: int = 0,
    kept: Callable[[int], Snapshot | None] | None = None,
) -> Snapshot:
    """Rebuild the state an uncompressed payload describes, applying it to ``base``.

    ``kept`` looks up the client's other kept snapshots by id: a predicted payload names one
    (older than ``base``); ``tick`` must be the message's ``server_tick``.
    """
    reader = _Reader(raw)
    flags, n_spawn, n_despawn, n_update, lag = _read_header(schema, reader)
    prev = None
    if flags & FLAG_DELTA:
        if base is None:
            raise SnapshotDecodeError("delta payload but its base snapshot is unknown")
        if lag:
            prev = kept(base.id - lag) if kept is not None and base.id > lag else None
            if prev is None:
                raise SnapshotDecodeError(f"prediction snapshot {base.id - lag} is unknown")
            if not can_predict(prev, base, tick):
                raise SnapshotDecodeError("prediction snapshot ticks out of range")
    else:
        base = empty_snapshot(schema)
    expected_crc = _U32.unpack(reader.take(4))[0] if flags & FLAG_CHECKSUM else None

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
    if len(common_ids) + n_spawn > MAX_ENTITIES or n_update > len(common_ids):
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
        updated = _read_changed_rows(reader, flags, len(common_ids), n_update)
        if flags & FLAG_ALL_FIELDS:
            field_masks = [slice(None)] * len(schema)
        else:
            field_masks = [reader.mask(n_update) for _ in schema.fields]
        if prev is not None and base is not None:
            prev_rows, has_prev = _align(common_ids[updated], prev.net_ids)
            ahead, span = tick - base.tick, base.tick - prev.tick
        for f, field in enumerate(schema.fields):
            rows = updated[field_masks[f]]
            if len(rows) == 0:
                continue
            target = common_codes[f]
            for comp, bits in enumerate(field.encoding.code_bits):
                byte = reader.take(1)[0]
                width = byte & _WIDTH_BITS
                if width > bits or byte & ~(_WIDTH_BITS | WIDTH_PREDICTED):
                    raise SnapshotDecodeError(f"delta width byte {byte:#x} ({bits}-bit codes)")
                zz = unpack_bits(reader.take(packed_size(len(rows), width)), len(rows), width)
                zz64 = zz.astype(np.int64)
                signed = (zz64 >> 1) ^ -(zz64 & 1)
                old = target[rows, comp].astype(np.int64)
                if byte & WIDTH_PREDICTED:
                    if prev is None:
                        raise SnapshotDecodeError("predicted deltas without a prediction snapshot")
                    pick = field_masks[f]
                    # An empty prediction snapshot predicts the base itself (no velocity).
                    then = prev.codes[f][prev_rows[pick], comp] if len(prev) else old
                    old = old + _extrapolation(old, then, has_prev[pick], ahead, span)
                target[rows, comp] = (old + signed) & ((1 << bits) - 1)
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
    kept: Callable[[int], Snapshot | None] | None = None,
) -> Snapshot:
    """Decode a ``Snapshot`` message's payload against ``base`` (the snapshot of ``base_id``)."""
    raw = decompress_payload(payload, compressed)
    return decode_delta(schema, raw, base, snapshot_id=snapshot_id, tick=tick, kept=kept)
