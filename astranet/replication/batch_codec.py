"""Many snapshot payloads in one vectorised pass: byte for byte what :func:`encode_delta` gives.

A room under interest management encodes one payload per client per tick, each a delta of that
client's own state against its own acked base. Client by client that is ~40 small numpy calls
per payload (0.3 ms each at 100 clients); here every client's rows sit in one flat table
(:class:`FlatRows`, sorted by client then net id) and each step of the codec -- membership,
change masks, zigzag deltas, per-payload widths, bit packing -- is one numpy pass over all of
them. Only the final join of each payload's pieces is per client.

Operations: :func:`encode_flat` (flat tables in, one ``bytes`` per client out) and
:func:`encode_deltas` (lists of snapshots in, for callers that have them one by one).
Goals: output identical to ``encode_delta(schema, current, base)`` for every client (tested
against it); O(rows) numpy work plus O(clients x fields) Python. Limits: no checksum flag (the
budgeted encoder does not send one); compression is the caller's (``compress_payload``).
Benchmark: benchmarks/interest.py (100 payloads per tick).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from astranet.ecs.schema import Schema
from astranet.replication._rows import rows_differ
from astranet.replication.codec import (
    FLAG_ALL_FIELDS,
    FLAG_DELTA,
    FLAG_ROW_LIST,
    FLAG_STRUCTURE,
    FORMAT_VERSION,
)
from astranet.replication.snapshot import Snapshot
from astranet.varint import leb128

__all__ = [
    "FlatRows",
    "as_codes",
    "as_words",
    "bit_lengths",
    "encode_deltas",
    "encode_flat",
    "pack_runs",
    "run_starts",
    "segment_max",
    "segment_max_at",
    "segment_starts",
    "segment_sums",
    "words_differ",
    "zigzag",
]

_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def as_words(codes: np.ndarray) -> np.ndarray:
    """Codes ``(n, k)`` as one machine word per row (a 1-D view) when a row fits one, else
    the array itself: numpy gathers and compares 1-D words ~20x faster than short rows."""
    if codes.ndim == 2 and codes.flags.c_contiguous:
        word = _UINT.get(codes.shape[1] * codes.itemsize)
        if word is not None:
            return codes.view(word).reshape(len(codes))
    return codes


def as_codes(words: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Undo :func:`as_words`: ``(n, k)`` codes of ``like``'s dtype and width (a view)."""
    if words.ndim == 2:
        return words
    return np.ascontiguousarray(words).view(like.dtype).reshape(len(words), like.shape[1])


def words_differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row: whether two :func:`as_words` arrays differ."""
    return a != b if a.ndim == 1 else rows_differ(a, b)


def zigzag(cur: np.ndarray, base: np.ndarray, bits: np.ndarray | tuple[int, ...]) -> np.ndarray:
    """``codec._zigzag_delta`` in 32-bit arithmetic: ``cur - base`` wrapped to the signed
    ``bits``-bit range (sign-extending the low bits), zigzagged; ``(m, k)`` uint32.

    ``bits`` may be the encoding's ``code_bits`` tuple itself (no array to convert back).
    Shifts by a Python int (numpy 2 keeps int32; a 0-d constant costs a call), column group
    by column group: shifting an ``(m, k)`` array by a ``(k,)`` array of counts takes numpy's
    slow broadcasting loop (~20x slower)."""
    widths = bits if type(bits) is tuple else np.asarray(bits, dtype=np.int64).ravel().tolist()
    # One subtract in int32: the inputs cast as astype(int32) would (wrapping mod 2**32).
    diff = np.subtract(cur, base, dtype=np.int32, casting="unsafe")
    first = widths[0] if widths else 32
    if all(width == first for width in widths):
        _zigzag_in_place(diff, 32 - first)
    else:
        for k, width in enumerate(widths):
            column = np.ascontiguousarray(diff[:, k])
            _zigzag_in_place(column, 32 - width)
            diff[:, k] = column
    return diff.view(np.uint32)


def _zigzag_in_place(diff: np.ndarray, shift: int) -> None:
    """Sign-extend the low ``32 - shift`` bits of int32 ``diff`` and zigzag them, in place."""
    if shift:  # a shift by 0 is a no-op: skip both calls (32-bit codes)
        np.left_shift(diff, shift, out=diff)
        np.right_shift(diff, shift, out=diff)
    sign = np.right_shift(diff, 31)
    np.left_shift(diff, 1, out=diff)
    np.bitwise_xor(diff, sign, out=diff)


@dataclass(frozen=True, slots=True)
class FlatRows:
    """Several clients' snapshot rows in one table: ``counts[c]`` rows of client ``c``, then
    the next client's; within a client rows are sorted by net id."""

    counts: np.ndarray  # (clients,) int64
    net_ids: np.ndarray  # (rows,) uint32
    codes: tuple[np.ndarray, ...]  # per field (rows, k)

    @classmethod
    def of(cls, schema: Schema, snapshots: Sequence[Snapshot | None]) -> FlatRows:
        """Concatenate ``snapshots`` (None: no rows) into one table."""
        present = [s for s in snapshots if s is not None]
        counts = np.array([0 if s is None else len(s) for s in snapshots], dtype=np.int64)
        if not present:
            return cls(
                counts,
                np.zeros(0, np.uint32),
                tuple(
                    np.zeros((0, len(f.encoding.code_bits)), f.encoding.code_dtype)
                    for f in schema.fields
                ),
            )
        ids = np.concatenate([s.net_ids for s in present]).astype(np.uint32, copy=False)
        codes = tuple(
            np.concatenate([s.codes[f] for s in present]) for f in range(len(schema.fields))
        )
        return cls(counts, ids, codes)

    def clients(self) -> np.ndarray:
        """The client of each row."""
        return np.repeat(np.arange(len(self.counts)), self.counts)


def segment_starts(counts: np.ndarray) -> np.ndarray:
    """The n + 1 offsets of segments of ``counts`` elements each (0 first)."""
    starts = np.zeros(len(counts) + 1, dtype=np.int64)
    # The ufunc method directly: np.cumsum's Python wrapper costs as much as the sum here.
    np.add.accumulate(counts, out=starts[1:], dtype=np.int64)
    return starts


def pack_runs(
    values: np.ndarray, run: np.ndarray, widths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bit-pack many runs at once, each as ``pack_bits(run_values, width)`` would.

    ``values`` (each < 2**width of its run) are grouped by ``run`` (non-decreasing run index,
    0..len(widths)-1). Returns the concatenated bytes (uint8) and each run's byte offset
    (``len(widths) + 1`` entries).
    """
    widths = np.asarray(widths, dtype=np.int64)
    return _pack_sections([(values, np.asarray(run, dtype=np.int64), widths)], len(widths))


_Section = tuple[np.ndarray, np.ndarray, np.ndarray]  # values, owner (non-decreasing), widths


def _pack_sections(sections: Sequence[_Section], n_owners: int) -> tuple[np.ndarray, np.ndarray]:
    """Pack runs laid out owner-major: owner 0's run of section 0, of section 1, ..., then
    owner 1's. ``widths[o]`` is the bit width of owner ``o``'s run in that section. Returns the
    bytes and each owner's byte offset (``n_owners + 1`` entries).

    No loop over runs. Every run starts on a byte. Multi-bit values (at most 32 bits) are
    shifted into 64-bit words: within a section they ascend, so the values of one word are
    adjacent and OR together in one ``reduceat``, and a value spills into the next word at
    most. One-bit runs (masks) own whole bytes: they are padded to 8 bits each, packed with
    ``np.packbits`` and the bytes put in place.
    """
    n_sections = len(sections)
    counts = np.empty((n_owners, n_sections), dtype=np.int64)
    widths = np.empty((n_owners, n_sections), dtype=np.int64)
    owners = np.arange(n_owners + 1)
    for s, (_, owner, width) in enumerate(sections):
        counts[:, s] = np.diff(np.searchsorted(owner, owners))  # owner is non-decreasing
        widths[:, s] = width
    run_bytes = (counts * widths + 7) // 8
    run_offset = np.zeros(n_owners * n_sections + 1, dtype=np.int64)
    np.cumsum(run_bytes.ravel(), out=run_offset[1:])
    run_start = run_offset[:-1].reshape(n_owners, n_sections)
    total = int(run_offset[-1])
    packed = np.zeros(total // 8 + 2, dtype=np.uint64)  # 64-bit words, and a spare
    mask_at: list[np.ndarray] = []
    mask_bytes: list[np.ndarray] = []
    for s, (values, _, _) in enumerate(sections):
        if len(values) == 0:
            continue
        n_s, w_s = counts[:, s], widths[:, s]
        if (n_s[w_s == 0] > 0).any():  # a zero-width run: its values are all 0
            values = values[np.repeat(w_s > 0, n_s)]
            n_s = np.where(w_s > 0, n_s, 0)
            if len(values) == 0:
                continue
        first = np.zeros(n_owners, dtype=np.int64)  # each run's first value
        np.cumsum(n_s[:-1], out=first[1:])
        if int(w_s.max()) <= 1:
            padded = np.zeros(n_owners + 1, dtype=np.int64)  # runs padded to whole bytes
            np.cumsum(run_bytes[:, s], out=padded[1:])
            to = np.arange(len(values)) + np.repeat(padded[:-1] * 8 - first, n_s)
            bits = np.zeros(int(padded[-1]) * 8, dtype=np.uint8)
            bits[to] = values.view(np.uint8) if values.dtype == np.bool_ else values
            mask_bytes.append(np.packbits(bits, bitorder="little"))
            moved = np.repeat(run_start[:, s] - padded[:-1], run_bytes[:, s])
            mask_at.append(np.arange(int(padded[-1])) + moved)
            continue
        # Value i of owner o sits at bit 8 * run_start + (i - first) * width: ascending, so
        # the values of one 64-bit word are adjacent and OR together in one reduceat.
        bit = np.repeat(run_start[:, s] * 8 - first * w_s, n_s)
        bit += np.arange(len(values)) * np.repeat(w_s, n_s)
        word = bit >> 6
        shift = (bit & 63).astype(np.uint64)
        v = values.astype(np.uint64)
        starts = run_starts(word)
        words = word[starts]
        packed[words] |= np.bitwise_or.reduceat(v << shift, starts)
        # What spills into the next word (a value is at most 32 bits: one spill at most).
        spill = (v >> np.uint64(1)) >> (np.uint64(63) - shift)
        packed[words + 1] |= np.bitwise_or.reduceat(spill, starts)
    packed = packed.view(np.uint8)[:total]
    if mask_at:
        packed[np.concatenate(mask_at)] = np.concatenate(mask_bytes)
    return packed, run_offset[::n_sections]


def segment_sums(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per segment ``values[starts[i]:starts[i + 1]]`` (``starts``: n + 1 non-decreasing
    offsets), the sum: one ``reduceat`` (a boolean index and a bincount cost 10x more)."""
    out = np.add.reduceat(np.concatenate((values, [0])), starts[:-1], dtype=np.int64)
    out[starts[1:] == starts[:-1]] = 0  # reduceat gives an empty segment's first value
    return out


def bit_lengths(top: np.ndarray) -> np.ndarray:
    """``int.bit_length`` of each value (frexp's exponent: exact for integers < 2**53)."""
    return np.frexp(np.asarray(top, dtype=np.float64))[1].astype(np.int64)


def segment_max(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Per owner (rows of ``values`` grouped by non-decreasing ``owner``): the maximum along
    axis 0, 0 when empty; ``(n, *values.shape[1:])`` (one reduce for every component)."""
    top = np.zeros((n, *values.shape[1:]), dtype=np.int64)
    if len(values):
        starts = run_starts(owner)
        # Codes and gaps fit int64 as they are: reduce first, widen on the store into ``top``
        # (a u64 is widened first, as before, so values past 2**63 compare as they did).
        if values.dtype == np.uint64:
            values = values.astype(np.int64)
        top[owner[starts]] = np.maximum.reduceat(values, starts, axis=0)
    return top


def segment_max_at(values: np.ndarray, starts: np.ndarray, axis: int = 0) -> np.ndarray:
    """:func:`segment_max` when the segments' offsets are known (``starts``, the n + 1 of
    :func:`segment_starts`): segment ``i`` is ``values[starts[i]:starts[i + 1]]`` along
    ``axis``; its maximum as int64, 0 when empty. One reduce, no search for the run starts.
    A ``(k, m)`` array reduced along axis 1 (one contiguous row per code component) is much
    faster than ``(m, k)`` along axis 0."""
    n = len(starts) - 1
    shape = list(values.shape)
    shape[axis] = n
    top = np.zeros(shape, dtype=np.int64)
    if values.shape[axis] == 0 or n == 0:
        return top
    if values.dtype == np.uint64:  # as segment_max: values past 2**63 compare as int64
        values = values.astype(np.int64)
    firsts = starts[:-1]
    present = firsts < starts[1:]
    if present.all():
        top[...] = np.maximum.reduceat(values, firsts, axis=axis)
        return top
    owners = np.flatnonzero(present)
    index: list[slice | np.ndarray] = [slice(None)] * values.ndim
    index[axis] = owners
    top[tuple(index)] = np.maximum.reduceat(values, firsts[owners], axis=axis)
    return top


def run_starts(keys: np.ndarray) -> np.ndarray:
    """Indices where a run of equal ``keys`` begins (the first is 0; ``keys`` non-empty).

    ``np.concatenate`` rather than ``np.r_`` (the index-trick object costs ~3 us a call) and
    ``ndarray.nonzero`` rather than ``np.flatnonzero`` (a Python wrapper and a ravel)."""
    return np.concatenate(([True], keys[1:] != keys[:-1])).nonzero()[0]


def encode_flat(
    schema: Schema,
    current: FlatRows,
    base: FlatRows,
    has_base: np.ndarray,
    base_pos: np.ndarray | None = None,
) -> list[bytes]:
    """One uncompressed payload per client: ``current`` client ``c`` against ``base`` client
    ``c`` (a delta when ``has_base[c]``, else full -- its base rows must then be empty).

    ``base_pos`` (optional, when the caller already knows it): per current row, the index of
    the same client and net id in ``base``, or -1.
    """
    n_clients = len(current.counts)
    cur_client = current.clients()
    base_client = base.clients()
    if base_pos is None:
        base_pos = _find(base_client, base.net_ids, cur_client, current.net_ids)
    in_base = base_pos >= 0
    common_cur = np.flatnonzero(in_base)
    common_base = base_pos[common_cur]
    spawn_rows = np.flatnonzero(~in_base)
    kept = np.zeros(len(base.net_ids), dtype=bool)
    kept[common_base] = True
    despawn_rows = np.flatnonzero(~kept)
    common_client = cur_client[common_cur]

    field_changed = []
    now_codes, then_codes = [], []
    for cur_codes, base_codes in zip(current.codes, base.codes, strict=True):
        now = as_words(cur_codes)[common_cur]
        then = as_words(base_codes)[common_base]
        field_changed.append(words_differ(now, then))
        now_codes.append(now)
        then_codes.append(then)
    any_changed = (
        np.logical_or.reduce(field_changed) if field_changed else np.zeros(len(common_cur), bool)
    )
    updated = np.flatnonzero(any_changed)
    updated_client = common_client[updated]

    n_spawn = segment_sums(~in_base, segment_starts(current.counts))
    n_despawn = segment_sums(~kept, segment_starts(base.counts))
    n_common = current.counts - n_spawn
    n_update = segment_sums(any_changed, segment_starts(n_common))
    has_updates = n_update > 0

    # The changed-row set: a bitmask over the common rows, or the gap list when smaller.
    common_first = np.zeros(n_clients, dtype=np.int64)
    np.cumsum(n_common[:-1], out=common_first[1:])
    index = updated - common_first[updated_client]  # row index within its client's common rows
    previous = np.empty_like(index)
    previous[:1] = -1
    previous[1:] = index[:-1]
    if len(index):
        previous[run_starts(updated_client)] = -1
    gaps = index - previous - 1  # the first is its index
    gap_width = bit_lengths(segment_max(gaps, updated_client, n_clients))
    mask_size = (n_common + 7) // 8
    row_list = (
        has_updates
        & (n_update < 8 * (mask_size - 1))
        & (1 + (n_update * gap_width + 7) // 8 < mask_size)
    )
    # No field masks when every updated row changed in every field (always, with one field).
    if len(field_changed) > 1:
        in_all = np.logical_and.reduce(field_changed)[updated]
        all_fields = has_updates & (segment_sums(in_all, segment_starts(n_update)) == n_update)
    else:
        all_fields = has_updates

    # The body of every payload, section by section in payload order (a section's values
    # grouped by client, with each client's bit width).
    sections: list[_Section] = []
    u32 = np.full(n_clients, 32, dtype=np.int64)
    byte_wide = np.full(n_clients, 8, dtype=np.int64)
    sections.append((base.net_ids[despawn_rows], base_client[despawn_rows], u32))
    spawn_client = cur_client[spawn_rows]
    sections.append((current.net_ids[spawn_rows], spawn_client, u32))
    for field, codes in zip(schema.fields, current.codes, strict=True):
        spawned = as_codes(as_words(codes)[spawn_rows], codes)
        for comp, bits in enumerate(field.encoding.code_bits):
            sections.append((spawned[:, comp], spawn_client, np.full(n_clients, bits)))
    as_mask = has_updates & ~row_list
    keep_common = as_mask[common_client]
    sections.append((any_changed[keep_common], common_client[keep_common], as_mask.astype(int)))
    listed = np.flatnonzero(row_list)
    sections.append((gap_width[listed], listed, byte_wide))
    keep_gaps = row_list[updated_client]
    sections.append((gaps[keep_gaps], updated_client[keep_gaps], gap_width))
    masked = (has_updates & ~all_fields).astype(np.int64)
    keep_masks = masked[updated_client].astype(bool)
    sections.extend(
        (changed[updated][keep_masks], updated_client[keep_masks], masked)
        for changed in field_changed
    )
    for f, field in enumerate(schema.fields):
        rows = updated[field_changed[f][updated]]
        owner = common_client[rows]
        with_values = np.flatnonzero(
            segment_sums(field_changed[f][updated], segment_starts(n_update))
        )
        bits = np.array(field.encoding.code_bits, dtype=np.int64)
        like = current.codes[f]
        zz = zigzag(as_codes(now_codes[f][rows], like), as_codes(then_codes[f][rows], like), bits)
        for comp in range(len(bits)):
            width = bit_lengths(segment_max(zz[:, comp], owner, n_clients))
            # A field with changed rows gets, per component, its width byte then the run.
            sections.append((width[with_values], with_values, byte_wide))
            sections.append((zz[:, comp], owner, width))
    body, offsets = _pack_sections(sections, n_clients)
    raw = body.tobytes()
    cuts = offsets.tolist()
    flags = (
        np.where(has_base, FLAG_DELTA, 0)
        | np.where(has_base & ((n_spawn > 0) | (n_despawn > 0)), FLAG_STRUCTURE, 0)
        | np.where(row_list, FLAG_ROW_LIST, 0)
        | np.where(all_fields, FLAG_ALL_FIELDS, 0)
    ).tolist()
    full_prefix = leb128(len(schema)) + schema.fingerprint.to_bytes(4, "little")
    payloads = []
    for c, (flag, spawns, despawns, updates) in enumerate(
        zip(flags, n_spawn.tolist(), n_despawn.tolist(), n_update.tolist(), strict=True)
    ):
        if not flag & FLAG_DELTA:
            counts = full_prefix + leb128(spawns)
        elif flag & FLAG_STRUCTURE:
            counts = leb128(spawns) + leb128(despawns) + leb128(updates)
        else:
            counts = leb128(updates)
        payloads.append(bytes((FORMAT_VERSION, flag)) + counts + raw[cuts[c] : cuts[c + 1]])
    return payloads


def _find(
    table_client: np.ndarray, table_ids: np.ndarray, client: np.ndarray, ids: np.ndarray
) -> np.ndarray:
    """Index in the (client, id)-sorted table of each (client, id), or -1."""
    keys = (table_client.astype(np.int64) << 32) | table_ids.astype(np.int64)
    wanted = (client.astype(np.int64) << 32) | ids.astype(np.int64)
    if len(keys) == 0:
        return np.full(len(wanted), -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where(keys[at] == wanted, at, -1)


def encode_deltas(
    schema: Schema, currents: Sequence[Snapshot], bases: Sequence[Snapshot | None]
) -> list[bytes]:
    """``[encode_delta(schema, cur, base) for cur, base in zip(currents, bases)]``, batched."""
    has_base = np.array([b is not None for b in bases], dtype=bool)
    return encode_flat(schema, FlatRows.of(schema, currents), FlatRows.of(schema, bases), has_base)
