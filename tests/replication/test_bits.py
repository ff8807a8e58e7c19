"""Bit packing: exact round trip at every width, documented LSB-first layout."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.replication._bits import SMALL_RUN, pack_bits, packed_size, unpack_bits


@settings(max_examples=1000)
@given(st.integers(0, 32), st.lists(st.integers(0, 2**32 - 1), max_size=70))
def test_pack_unpack_round_trip(width: int, raw: list[int]) -> None:
    values = np.array(raw, dtype=np.uint64) & ((1 << width) - 1)
    run = pack_bits(values.astype(np.uint32), width)
    assert len(run) == packed_size(len(values), width)
    assert np.array_equal(unpack_bits(run, len(values), width), values.astype(np.uint32))


def test_layout_is_lsb_first_across_bytes() -> None:
    # 3-bit values 1, 2, 7 -> bits 100 010 111 (LSB first) -> byte0 = 0b11_010_001, byte1 = 1
    assert pack_bits(np.array([1, 2, 7], dtype=np.uint32), 3) == bytes([0b11010001, 0b1])
    assert pack_bits(np.array([0x12345678], dtype=np.uint32), 32) == bytes.fromhex("78563412")


@settings(max_examples=500)
@given(st.integers(1, 32), st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=SMALL_RUN))
def test_the_small_run_path_packs_exactly_like_the_vectorised_one(
    width: int, raw: list[int]
) -> None:
    values = (np.array(raw, dtype=np.uint64) & ((1 << width) - 1)).astype(np.uint32)
    padded = np.concatenate([values, np.zeros(SMALL_RUN + 1 - len(values), dtype=np.uint32)])
    # Past SMALL_RUN values the numpy path runs; zeros pad only the high bits of the run.
    vectorised = pack_bits(padded, width)[: packed_size(len(values), width)]
    small = pack_bits(values, width)
    assert small[:-1] == vectorised[:-1]
    used = len(values) * width % 8 or 8
    assert small[-1] == vectorised[-1] & ((1 << used) - 1)
