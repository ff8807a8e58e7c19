"""Payload codec: deltas reproduce the quantized state exactly; bad bytes raise typed errors."""

import contextlib
import struct

import lz4.frame
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.ecs.schema import Quantized, Schema, replicated
from astranet.ecs.store import ColumnStore
from astranet.errors import SnapshotDecodeError
from astranet.replication.codec import (
    FLAG_ALL_FIELDS,
    FLAG_DELTA,
    FLAG_PREDICTED,
    FLAG_ROW_LIST,
    FLAG_STRUCTURE,
    MAX_DECODED_BYTES,
    WIDTH_PREDICTED,
    DesyncError,
    compress_payload,
    decode_delta,
    decode_payload,
    encode_delta,
    encode_payload,
    payload_counts,
)
from astranet.replication.snapshot import SnapshotHistory, capture
from tests.replication.helpers import SCHEMA, evolve, make_store

seeds = st.integers(0, 2**32 - 1)


def _history(seed: int, n: int, ticks: int, **evolve_kw) -> list:
    rng = np.random.default_rng(seed)
    store = make_store(rng, n)
    history = SnapshotHistory(store, capacity=ticks + 1)
    snaps = [history.capture(0)]
    for tick in range(1, ticks):
        evolve(store, rng, **evolve_kw)
        snaps.append(history.capture(tick))
    return snaps


@settings(max_examples=200)
@given(seeds, st.integers(0, 40), st.integers(1, 8), st.booleans(), st.booleans())
def test_delta_over_any_base_reproduces_state(seed, n, ticks, checksum, compress) -> None:
    snaps = _history(seed, n, ticks)
    rng = np.random.default_rng(seed + 1)
    cur = snaps[-1]
    base = snaps[int(rng.integers(0, len(snaps)))]
    payload, compressed = encode_payload(SCHEMA, cur, base, checksum=checksum, compress=compress)
    assert decode_payload(SCHEMA, payload, compressed, base).same_state(cur)
    full, full_compressed = encode_payload(SCHEMA, cur, None, checksum=checksum)
    assert decode_payload(SCHEMA, full, full_compressed, None).same_state(cur)
    assert decode_payload(SCHEMA, full, full_compressed, base).same_state(cur)  # base ignored


@settings(max_examples=200)
@given(seeds, st.integers(0, 30), st.integers(2, 6))
def test_visibility_filtered_delta_reproduces_client_view(seed, n, ticks) -> None:
    snaps = _history(seed, n, ticks)
    rng = np.random.default_rng(seed)
    base, cur = snaps[0], snaps[-1]
    base_view = base.select(rng.random(len(base)) < 0.6)
    cur_visible = rng.random(len(cur)) < 0.6
    raw = encode_delta(SCHEMA, cur.select(cur_visible), base_view, checksum=True)
    assert decode_delta(SCHEMA, raw, base_view).same_state(cur.select(cur_visible))


def test_unchanged_state_is_just_a_header() -> None:
    snaps = _history(7, 50, 1)
    raw = encode_delta(SCHEMA, snaps[0], snaps[0])
    assert raw == bytes([2, FLAG_DELTA, 0])  # version, flags, no updates
    assert decode_delta(SCHEMA, raw, snaps[0]).same_state(snaps[0])
    assert payload_counts(SCHEMA, raw) == (0, 0, 0, 3)


def test_sparse_changes_use_the_row_list_and_dense_ones_the_bitmask() -> None:
    for change, row_list in ((0.05, True), (0.6, False)):
        snaps = _history(9, 400, 2, change=change, spawn=0, despawn=0.0)
        raw = encode_delta(SCHEMA, snaps[1], snaps[0])
        assert bool(raw[1] & FLAG_ROW_LIST) == row_list
        assert not raw[1] & FLAG_STRUCTURE
        assert decode_delta(SCHEMA, raw, snaps[0]).same_state(snaps[1])


def test_empty_and_one_row_snapshots_round_trip() -> None:
    for n in (0, 1):
        snap = _history(3, n, 1)[0]
        assert decode_delta(SCHEMA, encode_delta(SCHEMA, snap)).same_state(snap)


def test_compression_only_when_smaller() -> None:
    snaps = _history(11, 400, 2, change=0.0, spawn=0, despawn=0.0)
    _, compressed = encode_payload(SCHEMA, snaps[1], snaps[0])
    assert not compressed  # a 3-byte payload: a frame would be larger
    payload, compressed = encode_payload(SCHEMA, snaps[1], None)
    assert compressed or len(payload) <= len(lz4.frame.compress(payload))


@replicated
class Tiny:
    x = Quantized(0.0, 15.0, 1.0)


def test_golden_bytes_of_a_tiny_full_and_delta_payload() -> None:
    """The worked example in docs/protocol.md, section "Snapshot payload"."""
    schema = Schema(Tiny)
    store = ColumnStore(schema)
    store.spawn(2, Tiny__x=[3.0, 5.0])
    history = SnapshotHistory(store)
    first = history.capture(1)
    store["Tiny.x"][1] = 6.0
    store.despawn([1])
    store.spawn(1, Tiny__x=9.0)
    second = history.capture(2)
    full = encode_delta(schema, first)
    fp = struct.pack("<I", schema.fingerprint)
    assert full == bytes([2, 0, 1]) + fp + bytes([2]) + struct.pack("<II", 1, 2) + bytes([0x53])
    delta = encode_delta(schema, second, first)
    assert delta == (
        bytes([2, FLAG_DELTA | FLAG_STRUCTURE | FLAG_ALL_FIELDS, 1, 1, 1])
        + struct.pack("<I", 1)
        + struct.pack("<I", 3)
        + bytes([0x09])
        + bytes([0x01])
        + bytes([2, 0x02])
    )
    assert decode_delta(schema, delta, first).same_state(second)
    # Id 2 moves on alone: the header shrinks to version, flags and one count.
    store["Tiny.x"][0] = 4.0
    third = history.capture(3)
    delta = encode_delta(schema, third, second)
    assert delta == bytes([2, FLAG_DELTA | FLAG_ALL_FIELDS, 1, 0x01, 2, 0x03])
    assert decode_delta(schema, delta, second).same_state(third)


def test_golden_bytes_of_a_row_list() -> None:
    """Rows 3 and 12 of 20 change: gaps 3 and 8 at 4 bits (0x83) beat a 3-byte bitmask; both
    deltas are +1, zigzag 2, at width 2 (0x0A)."""
    schema = Schema(Tiny)
    store = ColumnStore(schema)
    store.spawn(20, Tiny__x=np.zeros(20))
    history = SnapshotHistory(store)
    first = history.capture(1)
    store["Tiny.x"][[3, 12]] = 1.0
    second = history.capture(2)
    delta = encode_delta(schema, second, first)
    flags = FLAG_DELTA | FLAG_ROW_LIST | FLAG_ALL_FIELDS
    assert delta == bytes([2, flags, 2, 4, 0x83, 2, 0x0A])
    assert decode_delta(schema, delta, first).same_state(second)


# -- malformed input ----------------------------------------------------------------------


def _sample_payload(checksum: bool = True) -> tuple[bytes, object, object]:
    snaps = _history(5, 30, 4)
    return encode_delta(SCHEMA, snaps[-1], snaps[0], checksum=checksum), snaps[0], snaps[-1]


def test_every_truncation_raises() -> None:
    raw, base, _ = _sample_payload()
    for cut in range(len(raw)):
        with pytest.raises(SnapshotDecodeError):
            decode_delta(SCHEMA, raw[:cut], base)
    with pytest.raises(SnapshotDecodeError):
        decode_delta(SCHEMA, raw + b"\0", base)


@settings(max_examples=1500)
@given(st.data())
def test_bit_flips_raise_or_decode_the_same_state(data) -> None:
    raw, base, cur = SAMPLE
    bit = data.draw(st.integers(0, 8 * len(raw) - 1))
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        result = decode_delta(SCHEMA, bytes(flipped), base)
    except SnapshotDecodeError:
        return
    # With the checksum on, only a flip in padding bits can go unnoticed.
    assert result.same_state(cur)


SAMPLE = _sample_payload()


@settings(max_examples=500)
@given(st.binary(max_size=200), st.booleans())
def test_random_bytes_never_raise_anything_else(junk, compressed) -> None:
    raw, base, _ = SAMPLE
    for payload in (
        junk,
        raw[:3] + junk,
        bytes([2, 0, 1]) + struct.pack("<I", SCHEMA.fingerprint) + junk,
    ):
        with contextlib.suppress(SnapshotDecodeError):
            decode_payload(SCHEMA, payload, compressed, base)


def test_oversize_declared_counts_raise_before_allocating() -> None:
    raw, base, _ = _sample_payload(checksum=False)
    flags = raw[1] | FLAG_STRUCTURE
    huge = (b"\xff\xff\xff\xff\x0f", b"\x80\x80\x40", b"\x88\x27")  # 2**32-1, 2**20, 5000
    for counts in (
        *(h + b"\x00\x00" for h in huge),
        *(b"\x00" + h + b"\x00" for h in huge),
        *(b"\x00\x00" + h for h in huge),
    ):
        with pytest.raises(SnapshotDecodeError):
            decode_delta(SCHEMA, bytes([2, flags]) + counts + raw[3:], base)
    full = encode_delta(SCHEMA, base)
    for count in huge:
        with pytest.raises(SnapshotDecodeError):
            decode_delta(SCHEMA, full[:7] + count + full[8:], None)


def test_varints_must_be_minimal_and_at_most_five_bytes() -> None:
    snaps = _history(2, 3, 1)
    for counts in (b"\x80\x00", b"\x80\x80\x80\x80\x80\x00", b"\x81"):
        with pytest.raises(SnapshotDecodeError):
            decode_delta(SCHEMA, bytes([2, FLAG_DELTA]) + counts, snaps[0])


def test_flags_that_do_not_fit_the_payload_raise() -> None:
    snaps = _history(4, 10, 2, change=0.0, spawn=0, despawn=0.0)
    full = encode_delta(SCHEMA, snaps[0])
    for flag in (FLAG_STRUCTURE, FLAG_ROW_LIST, FLAG_ALL_FIELDS, 0x20, 0x80):
        with pytest.raises(SnapshotDecodeError, match="flags"):
            decode_delta(SCHEMA, bytes([2, full[1] | flag]) + full[2:], None)
    for flag in (FLAG_ROW_LIST, FLAG_ALL_FIELDS):  # row-set flags but no updates
        with pytest.raises(SnapshotDecodeError, match="flags"):
            decode_delta(SCHEMA, bytes([2, FLAG_DELTA | flag, 0]), snaps[0])


def test_a_row_list_beyond_the_base_rows_raises() -> None:
    schema = Schema(Tiny)
    store = ColumnStore(schema)
    store.spawn(20, Tiny__x=np.zeros(20))
    first = capture(store, 1, 1)
    flags = FLAG_DELTA | FLAG_ROW_LIST | FLAG_ALL_FIELDS
    # Rows 4 and 20 (of 0..19); rows 19 and 36; a width above 32 bits.
    for rows in (bytes([4, 0xF4]), bytes([5, 0x13, 0x02]), bytes([33, 0x83])):
        with pytest.raises(SnapshotDecodeError):
            decode_delta(schema, bytes([2, flags, 2]) + rows + bytes([2, 0x0A]), first)
    good = bytes([2, flags, 2, 4, 0xF3, 2, 0x0A])  # rows 3 and 19
    assert decode_delta(schema, good, first).codes[0][[3, 19], 0].tolist() == [1, 1]


def test_unknown_base_wrong_schema_and_version_raise() -> None:
    raw, base, _ = _sample_payload()
    with pytest.raises(SnapshotDecodeError, match="base"):
        decode_delta(SCHEMA, raw, None)
    with pytest.raises(SnapshotDecodeError, match="version"):
        decode_delta(SCHEMA, bytes([1]) + raw[1:], base)
    with pytest.raises(SnapshotDecodeError, match="schema"):
        decode_delta(Schema(Tiny), encode_delta(SCHEMA, base), None)


def test_checksum_mismatch_is_a_desync() -> None:
    raw, base, _ = _sample_payload()
    crc_offset = payload_counts(SCHEMA, raw).header_bytes - 4
    tampered = raw[:crc_offset] + bytes([raw[crc_offset] ^ 1]) + raw[crc_offset + 1 :]
    with pytest.raises(DesyncError):
        decode_delta(SCHEMA, tampered, base)


def test_lz4_bombs_truncation_and_junk_raise() -> None:
    raw, base, _ = _sample_payload()
    bomb = lz4.frame.compress(b"\0" * (MAX_DECODED_BYTES + 1))
    assert len(bomb) < 100_000
    good = lz4.frame.compress(raw)
    for payload in (bomb, good[:-3], good + b"junk", b"not a frame", b""):
        with pytest.raises(SnapshotDecodeError):
            decode_payload(SCHEMA, payload, True, base)
    with pytest.raises(SnapshotDecodeError):
        decode_payload(SCHEMA, b"\0" * (MAX_DECODED_BYTES + 1), False, base)
    decode_payload(SCHEMA, good, True, base)  # and the intact frame decodes


# -- prediction ---------------------------------------------------------------------------


def _moving_history(seed: int, n: int, ticks: int, *, steady: bool = False) -> list:
    """Rows moving at constant velocity (plus noise on some), spawns and despawns now and then
    (``steady``: one velocity, one tick apart, nothing else)."""
    rng = np.random.default_rng(seed)
    store = make_store(rng, n)
    store["Body.pos"][:] = rng.uniform(-50, 50, (n, 3))
    velocity = rng.normal(0, 0.3, (n, 3))
    history = SnapshotHistory(store, capacity=ticks + 1)
    snaps = [history.capture(0)]
    tick = 0
    for _ in range(1, ticks):
        if steady:
            tick += 1
            store["Body.pos"][:] += velocity
            snaps.append(history.capture(tick))
            continue
        tick += int(rng.integers(1, 4))
        if rng.random() < 0.3:
            evolve(store, rng, change=0.1, spawn=2, despawn=0.1)
            velocity = rng.normal(0, 0.3, (len(store), 3))
        store["Body.pos"][:] += velocity * rng.integers(1, 3)
        snaps.append(history.capture(tick))
    return snaps


@settings(max_examples=200)
@given(seeds, st.integers(1, 40), st.integers(3, 8), st.booleans())
def test_predicted_deltas_reproduce_state(seed, n, ticks, checksum) -> None:
    snaps = _moving_history(seed, n, ticks)
    rng = np.random.default_rng(seed)
    kept = {s.id: s for s in snaps}
    i = int(rng.integers(2, len(snaps)))
    j = int(rng.integers(1, i))
    k = int(rng.integers(0, j))
    cur, base, prev = snaps[i], snaps[j], snaps[k]
    raw = encode_delta(SCHEMA, cur, base, checksum=checksum, prev=prev)
    assert len(raw) <= len(encode_delta(SCHEMA, cur, base, checksum=checksum))
    out = decode_delta(SCHEMA, raw, base, tick=cur.tick, kept=kept.get)
    assert out.same_state(cur)


def test_steady_movers_cost_almost_nothing_when_predicted() -> None:
    schema = Schema(Tiny)
    store = ColumnStore(schema)
    store.spawn(8, Tiny__x=np.arange(8.0))
    history = SnapshotHistory(store)
    a = history.capture(10)
    store["Tiny.x"][:] += 2.0
    b = history.capture(12)
    store["Tiny.x"][:] += 1.0  # one tick later: half of the 2-tick velocity
    c = history.capture(13)
    plain = encode_delta(schema, c, b)
    assert plain == bytes([2, FLAG_DELTA | FLAG_ALL_FIELDS, 8, 0xFF, 2, 0xAA, 0xAA])
    raw = encode_delta(schema, c, b, prev=a)
    # 8 updates, lag 1, bitmask 0xFF, width 0 predicted: the movers cost no delta bits.
    flags = FLAG_DELTA | FLAG_ALL_FIELDS | FLAG_PREDICTED
    assert raw == bytes([2, flags, 8, 1, 0xFF, WIDTH_PREDICTED])
    kept = {a.id: a, b.id: b}
    assert decode_delta(schema, raw, b, tick=c.tick, kept=kept.get).same_state(c)


def test_predicted_payloads_without_their_prediction_snapshot_raise() -> None:
    snaps = _moving_history(3, 20, 4, steady=True)
    cur, base, prev = snaps[3], snaps[2], snaps[1]
    raw = encode_delta(SCHEMA, cur, base, prev=prev)
    assert raw[1] & FLAG_PREDICTED
    kept = {s.id: s for s in snaps}
    with pytest.raises(SnapshotDecodeError, match="prediction snapshot"):
        decode_delta(SCHEMA, raw, base, tick=cur.tick)  # no lookup
    with pytest.raises(SnapshotDecodeError, match="prediction snapshot"):
        decode_delta(SCHEMA, raw, base, tick=cur.tick, kept={}.get)
    with pytest.raises(SnapshotDecodeError, match="ticks"):
        decode_delta(SCHEMA, raw, base, tick=base.tick - 1, kept=kept.get)
    for cut in range(len(raw)):
        with pytest.raises(SnapshotDecodeError):
            decode_delta(SCHEMA, raw[:cut], base, tick=cur.tick, kept=kept.get)
    with pytest.raises(SnapshotDecodeError, match=r"lag|flags"):
        decode_delta(SCHEMA, bytes([2, FLAG_DELTA | FLAG_PREDICTED, 0]), base, tick=cur.tick)


@settings(max_examples=800)
@given(st.data())
def test_bit_flips_in_predicted_payloads_raise_or_decode_the_same_state(data) -> None:
    raw, base, cur, kept = PREDICTED_SAMPLE
    bit = data.draw(st.integers(0, 8 * len(raw) - 1))
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        result = decode_delta(SCHEMA, bytes(flipped), base, tick=cur.tick, kept=kept.get)
    except SnapshotDecodeError:
        return
    assert result.same_state(cur)


def _predicted_sample():
    snaps = _moving_history(8, 30, 5, steady=True)
    raw = encode_delta(SCHEMA, snaps[4], snaps[3], checksum=True, prev=snaps[2])
    assert raw[1] & FLAG_PREDICTED
    return raw, snaps[3], snaps[4], {s.id: s for s in snaps}


PREDICTED_SAMPLE = _predicted_sample()


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=40),
        st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=3), st.integers(1, 40)),
    )
)
def test_payloads_too_short_to_shrink_skip_lz4_with_the_same_result(raw: bytes) -> None:
    # compress_payload does not call lz4 for <= 25 bytes: a frame of them is never smaller.
    packed = lz4.frame.compress(raw, store_size=False)
    expected = (packed, True) if len(packed) < len(raw) else (raw, False)
    assert compress_payload(raw) == expected
    if len(raw) <= 25:
        assert len(packed) >= len(raw)


@settings(max_examples=300)
@given(
    seeds,
    st.integers(0, 250),  # past SMALL_ROWS_MANY_FIELDS
    st.integers(1, 6),
    st.booleans(),
    st.floats(0.0, 1.0),
    st.sampled_from([0.0, 0.1, 0.5]),
)
def test_small_room_encoder_gives_the_per_field_bytes(
    seed, n, ticks, checksum, change, despawn
) -> None:
    """The one-matrix encoder of small snapshots (codec._encode_small) writes exactly the bytes
    of the per-field path, for full payloads, deltas over any base and filtered views."""
    snaps = _history(seed, n, ticks, change=change, despawn=despawn)
    rng = np.random.default_rng(seed + 2)
    cur = snaps[-1]
    base = snaps[int(rng.integers(0, len(snaps)))]
    views = [(cur, base), (cur, None)]
    views.append((cur.select(rng.random(len(cur)) < 0.7), base.select(rng.random(len(base)) < 0.7)))
    for current, against in views:
        small = encode_delta(SCHEMA, current, against, checksum=checksum)
        with _per_field_path():
            assert encode_delta(SCHEMA, current, against, checksum=checksum) == small


@contextlib.contextmanager
def _per_field_path():
    import astranet.replication.codec as codec_module

    saved = codec_module.SMALL_ROWS, codec_module.SMALL_ROWS_MANY_FIELDS
    codec_module.SMALL_ROWS = codec_module.SMALL_ROWS_MANY_FIELDS = -1
    try:
        yield
    finally:
        codec_module.SMALL_ROWS, codec_module.SMALL_ROWS_MANY_FIELDS = saved
