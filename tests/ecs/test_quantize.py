"""Quantizers: codes are a fixed point of dequantize -> quantize, and errors stay within a step."""

import warnings

import numpy as np
from hypothesis import given, reject, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from astranet.ecs import quantize as q
from astranet.ecs.schema import Angle, Bool, Float, Quantized, Quaternion, SchemaError

floats = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@settings(max_examples=500)
@given(hnp.arrays(np.float32, st.integers(0, 64), elements=floats))
def test_linear_quantize_is_idempotent_and_within_half_a_step(values: np.ndarray) -> None:
    enc = Quantized(-4096.0, 4096.0, 1 / 512)
    codes = enc.quantize(values)
    back = enc.dequantize(codes)
    assert np.array_equal(enc.quantize(back), codes)
    inside = np.abs(values) <= 4096
    assert np.all(np.abs(back[inside] - values[inside]) <= 1 / 1024 + 1e-6)
    assert np.all(back[values > 4096] == 4096) and np.all(back[values < -4096] == -4096)


@settings(max_examples=300)
@given(
    st.floats(-100, 100),
    st.floats(0.001, 50),
    st.integers(1, 3),
    st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=30),
)
def test_linear_idempotent_for_any_valid_declaration(lo, width, size, raw) -> None:
    step = width / 97
    try:
        enc = Quantized(lo, lo + width, step, size=size)
    except SchemaError:
        reject()  # steps below float32 resolution are refused by design (tested elsewhere)
    values = np.resize(np.array(raw, dtype=np.float32), (len(raw), size)).squeeze()
    codes = enc.quantize(values)
    assert codes.shape == (len(raw), size)
    assert np.array_equal(enc.quantize(enc.dequantize(codes)), codes)
    assert int(codes.max()) <= enc.max_code < 1 << enc.code_bits[0]


def test_nan_and_inf_do_not_crash_and_clamp() -> None:
    enc = Quantized(-1.0, 1.0, 0.01)
    codes = enc.quantize(np.array([np.nan, np.inf, -np.inf], dtype=np.float32))
    assert codes.ravel().tolist() == [0, 200, 0]  # NaN -> code 0 (documented)


@settings(max_examples=300)
@given(
    hnp.arrays(np.float32, st.integers(0, 64), elements=st.floats(width=32)),
    st.sampled_from([0.0, -0.0, -3.0, 0.25]),
    st.sampled_from([1 / 64, 0.1, 3.0]),
)
def test_linear_codes_match_the_formula_from_zero_or_not(
    values: np.ndarray, lo: float, step: float
) -> None:
    # A range from 0 skips the subtraction (v - 0.0 is v); every other range subtracts lo.
    top = 5000
    expected = (values.astype(np.float64) - lo) / step
    expected = np.rint(np.fmin(np.fmax(expected, 0.0), top)).astype(np.uint32)
    assert q.quantize_linear(values, lo, step, top).tobytes() == expected.tobytes()


@settings(max_examples=300)
@given(
    hnp.arrays(np.float32, st.integers(0, 64), elements=st.floats(-50, 50, width=32)),
    st.integers(4, 16),
)
def test_angle_wraps_and_is_idempotent(angles: np.ndarray, bits: int) -> None:
    enc = Angle(bits)
    codes = enc.quantize(angles)
    back = enc.dequantize(codes)
    assert np.all((back >= -np.pi) & (back < np.pi))
    assert np.array_equal(enc.quantize(back), codes)
    err = np.angle(np.exp(1j * (back.astype(np.float64) - angles)))  # wrapped difference
    assert np.all(np.abs(err) <= np.pi / (1 << bits) + 1e-5)


def test_non_finite_angles_are_angle_zero_without_a_warning() -> None:
    # +inf and -inf in one column: a sum over it is NaN with an "invalid value" warning.
    angles = np.array([np.inf, 1.0, -np.inf, np.nan, 1e308, 1e308], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        codes = q.quantize_angle(angles, 12)
    expected = q.quantize_angle(np.array([0.0, 1.0, 0.0, 0.0, 1e308, 1e308]), 12)
    assert codes.tolist() == expected.tolist() and codes[0] == 0


unit_quats = hnp.arrays(
    np.float64, st.tuples(st.integers(0, 32), st.just(4)), elements=st.floats(-1, 1)
).filter(lambda a: bool(np.all(np.linalg.norm(a, axis=1) > 0.1)))


@settings(max_examples=300)
@given(unit_quats, st.integers(6, 14))
def test_quaternion_smallest_three_is_close_and_same_rotation(quats, bits) -> None:
    enc = Quaternion(bits)
    codes = enc.quantize(quats)
    assert codes.shape == (len(quats), 4) and np.all(codes[:, 0] <= 3)
    back = enc.dequantize(codes).astype(np.float64)
    unit = quats / np.linalg.norm(quats, axis=1, keepdims=True)
    # q and -q are the same rotation: compare |dot|.
    dot = np.abs(np.sum(back * unit, axis=1))
    assert np.all(dot > 1 - 8.0 / (1 << bits))
    assert np.allclose(np.linalg.norm(back, axis=1), 1.0, atol=4.0 / (1 << bits))
    # Re-quantizing may flip to -q at exact ties (documented); the rotation stays put.
    again = enc.dequantize(enc.quantize(back)).astype(np.float64)
    assert np.all(np.abs(np.sum(again * back, axis=1)) > 1 - 8.0 / (1 << bits))


def test_quaternion_identity_and_degenerate_input() -> None:
    enc = Quaternion(9)
    quats = np.array([[0, 0, 0, 1], [0, 0, 0, 0], [np.nan, 0, 0, 1], [0, 0, 0, -1]], np.float32)
    back = enc.dequantize(enc.quantize(quats))
    assert np.array_equal(back, np.array([[0, 0, 0, 1]] * 4, np.float32))  # zero is a code


def test_bool_and_float_are_exact() -> None:
    flags = np.array([True, False, True])
    assert np.array_equal(Bool().dequantize(Bool().quantize(flags)), flags)
    values = np.array([1.5, -0.0, 3.4e38, np.inf], dtype=np.float32)
    assert np.array_equal(Float().dequantize(Float().quantize(values)), values)


def test_raw_dequantize_linear_matches_formula() -> None:
    codes = np.array([0, 1, 512], dtype=np.uint32)
    assert q.dequantize_linear(codes, -1.0, 0.5).tolist() == [-1.0, -0.5, 255.0]
