"""Pure vectorised quantizers: float columns <-> unsigned integer codes.

Operations: linear range quantization (``lo..hi`` in steps of ``step``), angle wrapping to
``bits`` codes per turn, smallest-three quaternion packing, and booleans as one bit.
Goals: whole columns at once (no per-entity Python); ``quantize(dequantize(c)) == c`` for linear,
angle and bool codes, so the state the server sends is a fixed point the server may also simulate
with; codes are plain unsigned integers so the codec can delta and bit-pack them uniformly.
Limits: codes are at most 32 bits; float work is done in float64 and results are float32.
Smallest-three is idempotent except at exact ties between the two largest components, where the
re-quantized index may differ (the dequantized rotation is still within one step).
Benchmark: benchmarks/test_bench_replication.py (capture = quantize every column).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "QUAT_COMPONENT_LIMIT",
    "dequantize_angle",
    "dequantize_linear",
    "dequantize_quaternion",
    "quantize_angle",
    "quantize_linear",
    "quantize_quaternion",
]

# After dropping the largest |component| of a unit quaternion, each remaining one lies within
# +-1/sqrt(2): if two were larger, their squares alone would exceed 1.
QUAT_COMPONENT_LIMIT = float(1.0 / np.sqrt(2.0))

_TAU = 2.0 * np.pi
# Up to this many angles quantize_angle takes the fraction of a turn with one remainder call.
_FRACTION_BY_REMAINDER = 64


def quantize_linear(
    values: np.ndarray, lo: float, step: float, max_code: int, dtype: np.dtype | type = np.uint32
) -> np.ndarray:
    """Map floats to ``round((clip(v) - lo) / step)`` as ``dtype`` (uint32); NaN maps to code 0.

    ``dtype`` must hold ``max_code`` (the schema passes each field's smallest code dtype, so no
    second cast is needed).
    """
    # A new float64 array: the steps below work in place. v - 0.0 is v exactly (-0.0
    # included), so a range from 0 (positions in a box, the common case) divides at once.
    from_zero = lo == 0.0
    if from_zero:
        scaled = np.divide(values, step, dtype=np.float64)
    else:
        scaled = np.subtract(values, lo, dtype=np.float64)
    if type(scaled) is not np.ndarray:  # a 0-d input gives a numpy scalar
        scaled = np.array(scaled)
    if not from_zero:
        np.divide(scaled, step, out=scaled)
    # NaN would make astype() undefined behaviour: fmax/fmin return the non-NaN operand, so NaN
    # and -inf pin to 0 and +inf to max_code in one pass each (np.nan_to_num costs ~6 calls).
    np.fmax(scaled, 0.0, out=scaled)
    np.fmin(scaled, max_code, out=scaled)
    return np.rint(scaled, out=scaled).astype(dtype)


def dequantize_linear(codes: np.ndarray, lo: float, step: float) -> np.ndarray:
    """Inverse of :func:`quantize_linear` (exact for codes, float32 out)."""
    return (lo + np.asarray(codes, dtype=np.float64) * step).astype(np.float32)


def quantize_angle(
    radians: np.ndarray, bits: int, dtype: np.dtype | type = np.uint32
) -> np.ndarray:
    """Wrap angles to one turn and map them to ``bits``-bit codes (code 0 is angle 0)."""
    turns = np.divide(radians, _TAU, dtype=np.float64)  # a new array: the rest is in place
    if type(turns) is not np.ndarray:  # a 0-d input gives a numpy scalar
        turns = np.array(turns)
    # Non-finite angles count as angle 0: NaN and +-inf all fail isfinite. (A sum would show
    # them ~0.3 us sooner, but +inf + -inf warns "invalid value" from inside the reduce.)
    finite = np.isfinite(turns)
    if not finite.all():
        turns[~finite] = 0.0
    full = 1 << bits
    # The fraction of a turn, t - floor(t). A small room's column in one call: the float
    # remainder by 1.0 is fmod (exact) plus 1.0 when negative, the same single rounding of the
    # same real number. fmod costs more per element: past ~100 rows floor and subtract win.
    if turns.size <= _FRACTION_BY_REMAINDER:
        np.remainder(turns, 1.0, out=turns)
    else:
        np.subtract(turns, np.floor(turns), out=turns)
    np.multiply(turns, full, out=turns)
    # rint then mod, so an angle just below a full turn wraps to code 0 instead of code 2**bits
    # (on whole floats below 2**21 the float remainder is exact).
    np.rint(turns, out=turns)
    np.remainder(turns, full, out=turns)
    return turns.astype(dtype)


def dequantize_angle(codes: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of :func:`quantize_angle`; results lie in ``[-pi, pi)``."""
    full = 1 << bits
    signed = np.asarray(codes, dtype=np.int64)
    signed = np.where(signed >= full // 2, signed - full, signed)
    return (signed * (_TAU / full)).astype(np.float32)


def _quat_max_code(bits: int) -> int:
    # An even code count minus one leaves 0.0 exactly representable (the middle code), so the
    # identity and axis-aligned rotations survive quantization exactly.
    return (1 << bits) - 2


def quantize_quaternion(quats: np.ndarray, bits: int) -> np.ndarray:
    """Smallest-three: ``(n, 4)`` x,y,z,w floats -> ``(n, 4)`` codes ``[index, a, b, c]``.

    ``index`` (2 bits) names the dropped largest component; ``a, b, c`` are the other three in
    x,y,z,w order, each quantized to ``bits`` over +-QUAT_COMPONENT_LIMIT. The sign is chosen so
    the dropped component is positive (q and -q are the same rotation). A zero or non-finite
    quaternion is encoded as the identity.
    """
    q = np.asarray(quats, dtype=np.float64).reshape(-1, 4)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    valid = np.isfinite(norm[:, 0]) & (norm[:, 0] > 1e-12)
    identity = np.array([0.0, 0.0, 0.0, 1.0])
    unit = np.where(valid[:, None], q / np.where(valid[:, None], norm, 1.0), identity)
    largest = np.argmax(np.abs(unit), axis=1)
    rows = np.arange(len(unit))
    sign = np.where(unit[rows, largest] < 0.0, -1.0, 1.0)
    unit *= sign[:, None]
    # Columns kept: all but `largest`, in x,y,z,w order.
    keep = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    rest = np.take_along_axis(unit, keep, axis=1)
    max_code = _quat_max_code(bits)
    step = 2.0 * QUAT_COMPONENT_LIMIT / max_code
    codes = quantize_linear(rest, -QUAT_COMPONENT_LIMIT, step, max_code)
    return np.concatenate([largest.astype(np.uint32)[:, None], codes], axis=1)


def dequantize_quaternion(codes: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of :func:`quantize_quaternion`: ``(n, 4)`` codes -> ``(n, 4)`` float32 x,y,z,w."""
    codes = np.asarray(codes).reshape(-1, 4)
    largest = codes[:, 0].astype(np.int64) & 3
    max_code = _quat_max_code(bits)
    step = 2.0 * QUAT_COMPONENT_LIMIT / max_code
    rest = -QUAT_COMPONENT_LIMIT + codes[:, 1:].astype(np.float64) * step
    dropped = np.sqrt(np.maximum(0.0, 1.0 - np.sum(rest * rest, axis=1)))
    out = np.empty((len(codes), 4), dtype=np.float64)
    rows = np.arange(len(codes))
    keep = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    np.put_along_axis(out, keep, rest, axis=1)
    out[rows, largest] = dropped
    return out.astype(np.float32)
