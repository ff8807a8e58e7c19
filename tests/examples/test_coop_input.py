"""astranet/examples/coop/input.py: the 4-byte input blob round-trips, and bad blobs are
InputError."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.examples.coop import Command, decode_command, encode_command, encode_input, game
from astranet.examples.coop import input as coop_input
from astranet.examples.coop.input import INPUT_BYTES, MAX_MOVE_SQ
from astranet.game import InputError

commands = st.builds(
    Command,
    move_x=st.integers(-128, 127),
    move_y=st.integers(-128, 127),
    aim=st.integers(0, 255),
    fire=st.booleans(),
)


@settings(max_examples=2000)
@given(commands)
def test_command_round_trips_through_its_blob(command: Command) -> None:
    blob = encode_command(command)
    assert len(blob) == INPUT_BYTES
    assert decode_command(blob) == command
    assert game.decode_input(blob) == command


@settings(max_examples=2000)
@given(st.binary(max_size=12))
def test_any_blob_decodes_or_raises_input_error(blob: bytes) -> None:
    try:
        command = decode_command(blob)
    except InputError:
        assert len(blob) != INPUT_BYTES or blob[3] & 0xFE
    else:
        assert encode_command(command) == blob


def test_repeated_blobs_decode_alike_and_the_cache_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(coop_input, "_DECODED", {})
    monkeypatch.setattr(coop_input, "_DECODED_LIMIT", 3)
    blob = encode_command(Command(5, -7, 200, True))
    first = decode_command(blob)
    assert decode_command(blob) is first  # the second time from the cache
    assert decode_command(bytearray(blob)) == first == decode_command(memoryview(blob))
    for _ in range(2):  # a bad blob is refused every time, never cached
        with pytest.raises(InputError):
            decode_command(b"\x00\x00\x00\x02")
    for aim in range(10):
        assert decode_command(encode_command(Command(aim=aim))) == Command(aim=aim)
    assert len(coop_input._DECODED) <= 3


def test_documented_layout() -> None:
    # move (-127, 64), aim 64 (a quarter turn: +y), FIRE
    assert decode_command(bytes([0x81, 0x40, 0x40, 0x01])) == Command(-127, 64, 64, True)
    assert Command(0, 0, 64).aim_radians == pytest.approx(math.pi / 2)


@pytest.mark.parametrize(
    "blob",
    [b"", b"\x00\x00\x00", b"\x00" * 5, b"\x00\x00\x00\x02", b"\x00\x00\x00\x80"],
    ids=["empty", "short", "long", "reserved-bit1", "reserved-bit7"],
)
def test_bad_blobs_are_input_errors(blob: bytes) -> None:
    with pytest.raises(InputError):
        game.decode_input(blob)


def test_non_bytes_is_input_error() -> None:
    with pytest.raises(InputError):
        decode_command("abcd")  # type: ignore[arg-type]


def test_out_of_range_command_cannot_be_encoded() -> None:
    with pytest.raises(InputError):
        encode_command(Command(move_x=200))


finite = st.floats(-10.0, 10.0, allow_nan=False)


@settings(max_examples=2000)
@given(finite, finite, st.floats(allow_nan=True, allow_infinity=True), st.booleans())
def test_encode_input_never_builds_an_impossible_speed(
    dx: float, dy: float, aim: float, fire: bool
) -> None:
    command = decode_command(encode_input(dx, dy, aim, fire))
    assert command.move_sq <= MAX_MOVE_SQ
    assert command.fire is fire
    if math.hypot(dx, dy) >= 1.0:  # full deflection is (almost) full speed
        assert command.move_sq >= 125 * 125


def test_encode_input_aim_and_non_finite_direction() -> None:
    assert decode_command(encode_input(0.0, 1.0, math.pi / 2)).aim == 64
    assert decode_command(encode_input(0.0, 0.0, -math.pi / 2)).aim == 192
    assert decode_command(encode_input(math.nan, 1.0)) == Command()
