"""Many rooms' small deltas in one pass: byte for byte what :func:`encode_delta` gives.

A server steps 50-250 small rooms per tick and each encodes one or two deltas of a dozen
changed rows. ``encode_delta`` spends ~20 numpy calls (~20 us) on each, which is all per-call
overhead at that size. Here the deltas of a whole chunk of rooms share the numpy work: one
compare per field over every room's rows, one zigzag over every changed row. What is left per
payload is Python over its few values: the widths (a ``max`` per run), the bit packing (the
layout of ``pack_bits``'s small-run path) into one int for the whole body, one conversion.

Operations: :func:`encode_same_rows` (pairs of views in, one ``bytes`` or None per pair out).
Scope: deltas (a base given) without checksum or prediction, whose current view has exactly the
base's rows (no spawn or despawn: a room's steady state), with at most ``max_updates`` changed
rows. Any other pair gets None and the caller encodes it with ``encode_delta``.
Goals: identical bytes (tests/replication/test_rooms_codec.py checks against encode_delta); no
numpy call per payload; O(rows) numpy plus O(changed values) Python.
Benchmark: benchmarks/fanout_tick.py (``--compare``: one by one against batched).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from astranet.ecs.schema import Schema
from astranet.replication._bits import fitting_run
from astranet.replication._rows import same_ids
from astranet.replication.batch_codec import (
    as_codes,
    as_words,
    segment_starts,
    words_differ,
    zigzag,
)
from astranet.replication.codec import FLAG_ALL_FIELDS, FLAG_DELTA, FLAG_ROW_LIST, FORMAT_VERSION
from astranet.replication.snapshot import Snapshot
from astranet.varint import leb128

__all__ = ["SMALL_DELTA_ROWS", "encode_same_rows"]

#: Changed rows a payload may have on this path. Python-int packing costs ~0.1 us per value;
#: past a few dozen rows numpy's per-call overhead is paid back and encode_delta is as fast.
SMALL_DELTA_ROWS = 64
_NO_UPDATE = bytes((FORMAT_VERSION, FLAG_DELTA)) + leb128(0)


def _same_rows(current: Snapshot, base: Snapshot) -> bool:
    # Incremental capture shares one ids array while the rows stay the same: usually `is`.
    return same_ids(current.net_ids, base.net_ids)


def _bits_int(flags: Sequence[bool]) -> int:
    """The little-endian bitmask with bit ``i`` set where ``flags[i]``, as an int."""
    mask = 0
    for i, flag in enumerate(flags):
        if flag:
            mask |= 1 << i
    return mask


def encode_same_rows(
    schema: Schema,
    currents: Sequence[Snapshot],
    bases: Sequence[Snapshot],
    *,
    max_updates: int = SMALL_DELTA_ROWS,
) -> list[bytes | None]:
    """Per pair, ``encode_delta(schema, currents[i], bases[i])`` -- or None when the pair is
    out of this path's scope (rows differ from the base's, or more than ``max_updates``
    changed rows). Both snapshots of a pair must be the client's views, as for encode_delta."""
    out: list[bytes | None] = [None] * len(currents)
    picked = [i for i, (c, b) in enumerate(zip(currents, bases, strict=True)) if _same_rows(c, b)]
    if not picked:
        return out
    cur = [currents[i] for i in picked]
    base = [bases[i] for i in picked]
    n_rooms = len(picked)
    counts_list = [len(s) for s in cur]
    counts = np.array(counts_list, dtype=np.int64)
    starts = segment_starts(counts)

    # Per field, over every pair's rows at once (pairs back to back, rows sorted by net id):
    # which rows changed. None: no pair's field changed (incremental capture kept the array).
    changed: list[np.ndarray | None] = []
    now_words: list[np.ndarray | None] = []
    then_words: list[np.ndarray | None] = []
    for f in range(len(schema.fields)):
        if all(c.codes[f] is b.codes[f] for c, b in zip(cur, base, strict=True)):
            changed.append(None)
            now_words.append(None)
            then_words.append(None)
            continue
        now = as_words(np.concatenate([c.codes[f] for c in cur]))
        then = as_words(np.concatenate([b.codes[f] for b in base]))
        changed.append(words_differ(now, then))
        now_words.append(now)
        then_words.append(then)
    masks = [m for m in changed if m is not None]
    if not masks:
        for i in picked:
            out[i] = _NO_UPDATE
        return out
    any_changed = masks[0] if len(masks) == 1 else np.logical_or.reduce(masks)
    updated = any_changed.nonzero()[0]  # 1-D: no np.flatnonzero wrapper and ravel
    if len(updated) == 0:
        for i in picked:
            out[i] = _NO_UPDATE
        return out
    owner = np.searchsorted(starts, updated, side="right") - 1  # the pair of each changed row
    n_update = np.bincount(owner, minlength=n_rooms)
    update_starts = segment_starts(n_update)
    local = updated - starts[owner]  # row index within its pair

    # The changed-row set (codec._changed_rows): each changed row's gap to the previous one
    # of its pair, minus one (the first: its index), packed at the pair's widest gap, when
    # that list is smaller than the bitmask over the pair's rows (decided per pair below).
    gaps = np.empty_like(local)
    gaps[1:] = local[1:] - local[:-1] - 1
    firsts = update_starts[:-1][n_update > 0]
    gaps[firsts] = local[firsts]

    # Per field with changes: which updated rows changed in it and their zigzag deltas per
    # code component (each pair's width per component, the bit length of its largest delta,
    # is taken below from its few values: cheaper than two segmented reduces per batch).
    in_field: list[list[bool] | None] = []
    values: list[tuple[list[int], list[list[int]]] | None] = []
    for f, field in enumerate(schema.fields):
        mask = changed[f]
        if mask is None:
            in_field.append(None)
            values.append(None)
            continue
        now, then = now_words[f], then_words[f]
        assert now is not None and then is not None
        field_flags: list[bool] | None = None  # None: every updated row changed in it
        if mask is any_changed:  # the only field with changes: every updated row, as is
            rows, field_starts = updated, update_starts
        else:
            in_updated = mask[updated]
            rows = updated[in_updated]
            field_starts = segment_starts(np.bincount(owner[in_updated], minlength=n_rooms))
            field_flags = in_updated.tolist()
        like = cur[0].codes[f]
        zz = zigzag(as_codes(now[rows], like), as_codes(then[rows], like), field.encoding.code_bits)
        in_field.append(field_flags)
        values.append((field_starts.tolist(), zz.T.tolist()))  # one list per component

    n_fields = len(schema.fields)
    starts_list = update_starts.tolist()
    local_list = local.tolist()
    gaps_list = gaps.tolist()
    # Per pair: every section after the header starts on a byte, so the payload body is one
    # Python int built section by section (``body |= section << offset``) and converted once;
    # the header is three bytes when fewer than 128 rows changed (a one-byte varint).
    for r, i in enumerate(picked):
        first, last = starts_list[r], starts_list[r + 1]
        n = last - first
        if n == 0:
            out[i] = _NO_UPDATE
            continue
        if n > max_updates:
            continue  # the caller's encode_delta
        size = (counts_list[r] + 7) >> 3  # of the bitmask over the pair's rows
        width = max(gaps_list[first:last]).bit_length()
        if n < 8 * (size - 1) and 1 + ((n * width + 7) >> 3) < size:
            body = width | (fitting_run(gaps_list[first:last], width) << 8)
            offset = 8 + ((n * width + 7) & ~7)
            flags = FLAG_DELTA | FLAG_ROW_LIST
        else:
            body = 0
            for row in local_list[first:last]:
                body |= 1 << row
            offset = 8 * size
            flags = FLAG_DELTA
        # No field masks when every changed row changed in every field (always with one).
        all_fields = n_fields == 1 or all(
            changed[f] is not None and (in_field[f] is None or all(in_field[f][first:last]))  # type: ignore[index]
            for f in range(n_fields)
        )
        if all_fields:
            flags |= FLAG_ALL_FIELDS
        else:
            mask_bits = 8 * ((n + 7) // 8)
            for f in range(n_fields):
                flags_f = in_field[f]
                if changed[f] is not None:  # else no row changed in it: a zero mask
                    # None: the only field with changes, every row.
                    mask = (1 << n) - 1 if flags_f is None else _bits_int(flags_f[first:last])
                    body |= mask << offset
                offset += mask_bits
        for f in range(n_fields):
            field_values = values[f]
            if field_values is None:
                continue
            field_starts, comps = field_values
            a, b = field_starts[r], field_starts[r + 1]
            if a == b:
                continue
            for run in comps:
                width = max(run[a:b]).bit_length()
                packed = fitting_run(run[a:b], width) if width else 0
                body |= (width | (packed << 8)) << offset
                offset += 8 + (((b - a) * width + 7) & ~7)
        header = bytes((FORMAT_VERSION, flags, n)) if n < 128 else bytes((FORMAT_VERSION, flags))
        out[i] = header + (leb128(n) if n >= 128 else b"") + body.to_bytes(offset >> 3, "little")
    return out
