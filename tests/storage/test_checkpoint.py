"""Checkpoint codec: exact round trips, and every corruption is a StorageError."""

from __future__ import annotations

import contextlib
import struct
import zlib

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from astranet.errors import StorageError
from astranet.storage.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    HEADER_BYTES,
    MAX_CHECKPOINT_BYTES,
    decode_checkpoint,
    encode_checkpoint,
)

PLAIN_DTYPES = ["|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8"]
ROW = np.dtype([("net_id", "<u4"), ("x", "<f4"), ("y", "<f4"), ("alive", "?")])
ALIGNED_ROW = np.dtype([("flag", "?"), ("hp", "<i8"), ("v", "<f2")], align=True)


def _assert_same_state(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, array in want.items():
        assert got[name].dtype == array.dtype, name
        assert got[name].shape == array.shape, name
        # Bytes, not values: NaN payloads and -0.0 must survive too.
        assert got[name].tobytes() == array.tobytes(), name


dtypes = st.one_of(st.sampled_from(PLAIN_DTYPES).map(np.dtype), st.sampled_from([ROW, ALIGNED_ROW]))
arrays = dtypes.flatmap(
    lambda dt: hnp.arrays(
        dt,
        hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=12),
        # Structured dtypes: hypothesis fills fields; plain: any value incl. NaN/inf.
    )
)
states = st.dictionaries(st.text(min_size=1, max_size=20), arrays, max_size=6)
ticks = st.integers(min_value=0, max_value=2**64 - 1)


@settings(max_examples=300)
@given(tick=ticks, state=states)
def test_round_trip_is_exact(tick: int, state: dict[str, np.ndarray]) -> None:
    got_tick, got_state = decode_checkpoint(encode_checkpoint(tick, state))
    assert got_tick == tick
    _assert_same_state(got_state, state)


def test_empty_and_one_row_states_round_trip() -> None:
    for state in (
        {},
        {"rows": np.zeros(0, ROW)},
        {"rows": np.ones(1, ROW)},
        {"grid": np.zeros((0, 3), "<f4")},
    ):
        tick, got = decode_checkpoint(encode_checkpoint(7, state))
        assert tick == 7
        _assert_same_state(got, state)


def test_decoded_arrays_are_writable_copies() -> None:
    blob = encode_checkpoint(1, {"x": np.arange(4, dtype="<i4")})
    _, state = decode_checkpoint(blob)
    state["x"][0] = 99  # must not raise (frombuffer alone gives a read-only view)
    assert state["x"].flags.owndata or state["x"].base is not None


def test_non_contiguous_input_is_encoded_in_logical_order() -> None:
    grid = np.arange(12, dtype="<i2").reshape(3, 4).T  # Fortran-ordered view
    _, state = decode_checkpoint(encode_checkpoint(0, {"g": grid}))
    np.testing.assert_array_equal(state["g"], grid)


@settings(max_examples=150)
@given(state=states)
def test_any_truncation_is_a_storage_error(state: dict[str, np.ndarray]) -> None:
    blob = encode_checkpoint(3, state)
    # Every prefix, not a sample: decoding a short prefix is microseconds.
    for cut in range(len(blob)):
        with pytest.raises(StorageError):
            decode_checkpoint(blob[:cut])


# Generating states is the slow part, so each example corrupts its blob many times.
@settings(max_examples=150)
@given(state=states, data=st.data())
def test_any_single_bit_flip_is_a_storage_error(state: dict[str, np.ndarray], data) -> None:
    blob = encode_checkpoint(3, state)
    bits = data.draw(
        st.lists(st.integers(min_value=0, max_value=len(blob) * 8 - 1), min_size=1, max_size=40)
    )
    for bit in bits:
        flipped = bytearray(blob)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(StorageError):
            decode_checkpoint(bytes(flipped))


@settings(max_examples=150)
@given(state=states, data=st.data())
def test_arbitrary_overwrites_never_raise_anything_else(state, data) -> None:
    blob = encode_checkpoint(3, state)
    overwrites = data.draw(
        st.lists(
            st.tuples(st.integers(min_value=0, max_value=len(blob) - 1), st.binary(min_size=1)),
            min_size=1,
            max_size=40,
        )
    )
    for start, junk in overwrites:
        damaged = bytearray(blob)
        damaged[start : start + len(junk)] = junk
        # StorageError is the expected outcome; anything else propagates and fails the test.
        with contextlib.suppress(StorageError):
            decode_checkpoint(bytes(damaged))


@settings(max_examples=500)
@given(blob=st.binary(max_size=200))
def test_random_bytes_are_rejected(blob: bytes) -> None:
    with pytest.raises(StorageError):
        decode_checkpoint(blob)


def _forge(body_obj: object, *, version: int = CHECKPOINT_FORMAT_VERSION, tick: int = 1) -> bytes:
    """A blob with a valid header and CRC around an arbitrary body: tests the body checks."""
    body = msgpack.packb(body_obj, use_bin_type=True)
    head = struct.pack("<4sHHQI", b"ANCK", version, 0, tick, len(body))
    return head + struct.pack("<I", zlib.crc32(body, zlib.crc32(head))) + body


def test_newer_format_version_names_both_versions() -> None:
    with pytest.raises(StorageError, match=r"checkpoint format v7 is newer .* supports \(v1\)"):
        decode_checkpoint(_forge([], version=7))


def test_wrong_magic_is_rejected() -> None:
    blob = b"XXXX" + encode_checkpoint(1, {})[4:]
    with pytest.raises(StorageError, match="not an astranet checkpoint"):
        decode_checkpoint(blob)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([["x", "|O", [1], b"\0" * 8]], "not allowed"),
        ([["x", "<U4", [1], b"\0" * 16]], "not allowed"),
        ([["x", ">f4", [1], b"\0" * 4]], "not allowed"),
        ([["x", "<f4", [3], b"\0" * 8]], "needs 12"),
        ([["x", "<f4", [1, 1, 1], b"\0" * 4]], "bad shape"),
        ([["x", "<f4", [-1], b""]], "bad shape"),
        ([["x", "<f4", [1], b"\0" * 4], ["x", "<f4", [1], b"\0" * 4]], "appears twice"),
        ([["x", "<f4", [1]]], "not \\[name"),
        ({"x": 1}, "bounded list"),
        ([["", "<f4", [1], b"\0" * 4]], "bad array name"),
        ([["x", "<f4", [1], "text"]], "not bytes"),
        (
            [["s", {"names": ["a"], "formats": ["|O"], "offsets": [0], "itemsize": 8}, [0], b""]],
            "invalid structured",
        ),
        (
            [["s", {"names": ["a"], "formats": ["<f8"], "offsets": [4], "itemsize": 8}, [0], b""]],
            "outside its itemsize",
        ),
        ([["s", {"names": ["a"]}, [0], b""]], "malformed dtype"),
    ],
)
def test_invalid_bodies_are_rejected_with_a_reason(body: object, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        decode_checkpoint(_forge(body))


@pytest.mark.parametrize(
    "state",
    [
        {"obj": np.array([object()], dtype=object)},
        {"big_endian": np.zeros(2, ">f4")},
        {"text": np.array(["a"])},
        {"cube": np.zeros((1, 1, 1), "<f4")},
        {"scalar": np.float32(1.0)},
        {"": np.zeros(1, "<f4")},
        {"nested": np.zeros(1, [("p", [("x", "<f4")])])},
    ],
)
def test_unsupported_state_is_refused_on_encode(state) -> None:
    with pytest.raises(StorageError):
        encode_checkpoint(1, state)


def test_oversized_checkpoint_is_refused() -> None:
    huge = np.zeros(MAX_CHECKPOINT_BYTES // 8 + 1, "<f8")
    with pytest.raises(StorageError, match="MAX_CHECKPOINT_BYTES"):
        encode_checkpoint(1, {"huge": huge})


def test_header_is_24_bytes_and_little_endian() -> None:
    blob = encode_checkpoint(0x0102030405060708, {})
    assert HEADER_BYTES == 24
    assert blob[:4] == b"ANCK"
    assert blob[4:6] == b"\x01\x00"  # version 1, little-endian
    assert blob[8:16] == bytes.fromhex("0807060504030201")
