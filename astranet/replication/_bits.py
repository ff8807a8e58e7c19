"""Bit packing of unsigned integer runs (LSB first), vectorised with numpy.

A run of ``m`` values of ``width`` bits occupies ``ceil(m * width / 8)`` bytes: value ``i`` is
bits ``i*width .. i*width+width-1`` of the run, least significant bit first, and bit ``j`` of
the run is bit ``j % 8`` (LSB = 0) of byte ``j // 8``. Unused high bits of the last byte are 0.
Limits: width 0..32 (a width of 0 means every value is 0 and takes no bytes).
Benchmark: benchmarks/test_bench_replication.py (encode/decode).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SMALL_RUN", "fitting_run", "pack_bits", "packed_size", "unpack_bits"]


def packed_size(count: int, width: int) -> int:
    """Bytes taken by ``count`` values of ``width`` bits."""
    return (count * width + 7) // 8


# Runs up to this many values are packed with Python integers: a snapshot of a small room packs
# a dozen runs of a few values each, where numpy's per-call overhead (~1 us x 8 calls) is the
# whole cost. The layout is the same (LSB first), so both paths give identical bytes.
SMALL_RUN = 32
_LITTLE = {1: "u1", 2: "<u2", 4: "<u4"}


def fitting_run(values: Sequence[int], width: int) -> int:
    """The run of ``values`` as one int (value ``i`` at bit ``i * width``), for values known to
    fit ``width`` bits (deltas packed at their largest one's bit length): Horner's rule from
    the last value, two operations per value and no mask. The small encoders build whole
    payload bodies from these ints, byte-aligned section by section."""
    run = 0
    for value in reversed(values):
        run = (run << width) | value
    return run


def pack_bits(values: np.ndarray, width: int) -> bytes:
    """Pack ``values`` (each < 2**width) into a run; see the module docstring for the layout."""
    count = len(values)
    if width == 0 or count == 0:
        return b""
    if count <= SMALL_RUN:
        mask = (1 << width) - 1
        run = 0
        for i, value in enumerate(values.tolist()):
            run |= (value & mask) << (i * width)
        return run.to_bytes(packed_size(count, width), "little")
    # Unpack only as many bytes per value as the width needs (a 9-bit delta: 16 bits, not 32).
    size = 1 if width <= 8 else 2 if width <= 16 else 4
    as_bytes = np.ascontiguousarray(values, dtype=_LITTLE[size]).view(np.uint8).reshape(-1, size)
    bits = np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :width]
    return np.packbits(bits.ravel(), bitorder="little").tobytes()


def unpack_bits(run: bytes | memoryview, count: int, width: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` uint32 values (``run`` must be packed_size long)."""
    if width == 0 or count == 0:
        return np.zeros(count, dtype=np.uint32)
    bits = np.unpackbits(
        np.frombuffer(run, dtype=np.uint8), count=count * width, bitorder="little"
    ).reshape(count, width)
    padded = np.zeros((count, 32), dtype=np.uint8)
    padded[:, :width] = bits
    return np.packbits(padded, axis=1, bitorder="little").view("<u4").ravel().astype(np.uint32)
