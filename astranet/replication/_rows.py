"""Row-wise "did anything change" for column and code arrays, compared by their bits.

Operations: :func:`rows_differ` over two arrays of the same shape and dtype, ``(n,)`` or
``(n, k)``. Values are compared as unsigned integers of the same width, so float columns compare
bit for bit (a NaN equals the same NaN; ``-0.0`` differs from ``0.0``): exactly the question
"would quantizing this row give the same codes", since quantizers are pure functions of the bits.
Goals: no reduce over the short ``k`` axis when a row is one machine word (that reduce was half
of a 10,000-entity tick); otherwise one ``!=`` per component.
Benchmark: benchmarks/tick.py (capture and delta encode).
"""

from __future__ import annotations

import numpy as np

__all__ = ["rows_differ", "same_ids"]

_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def rows_differ(cur: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Bool ``(n,)``: rows of ``cur`` whose bits differ from the same row of ``base``."""
    if cur.dtype.kind == "f":  # compare floats by their bits (codes are unsigned already)
        as_uint = _UINT[cur.itemsize]
        cur, base = cur.view(as_uint), base.view(as_uint)
    if cur.ndim == 1:
        return cur != base
    row_bytes = cur.shape[1] * cur.itemsize
    if row_bytes in _UINT and cur.flags.c_contiguous and base.flags.c_contiguous:
        # One row is one machine word: compare whole rows as integers.
        as_word = _UINT[row_bytes]
        return cur.view(as_word)[:, 0] != base.view(as_word)[:, 0]
    cur_bits, base_bits = cur, base
    changed = cur_bits[:, 0] != base_bits[:, 0]
    for comp in range(1, cur.shape[1]):
        changed |= cur_bits[:, comp] != base_bits[:, comp]
    return changed


def same_ids(ids: np.ndarray, other: np.ndarray) -> bool:
    """Whether two net id arrays hold the same ids in the same order: ``is`` while incremental
    capture shares one array, else their bytes (np.array_equal's Python wrapper costs more
    than comparing a small room's ids)."""
    if ids is other:
        return True
    if len(ids) != len(other):
        return False
    if ids.dtype == other.dtype:
        return ids.tobytes() == other.tobytes()
    return bool(np.array_equal(ids, other))
