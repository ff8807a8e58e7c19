"""coop input blob: the 4 bytes a client sends in every InputFrame, and its decoder.

Layout (little-endian, 4 bytes exactly)::

    offset  type   field
    0       int8   move_x    direction x scaled by 127 (-127..127)
    1       int8   move_y    direction y scaled by 127 (-127..127)
    2       uint8  aim       aim angle in 1/256 turns, 0 = +x, counter-clockwise (64 = +y)
    3       uint8  buttons   bit0 FIRE (fire one shot now); bits 1..7 must be 0

A move vector longer than 127 (``move_x**2 + move_y**2 > 127**2``) is an impossible speed
(:func:`encode_input` truncates toward zero, so it never builds one). FIRE means "fire now",
not "trigger held": a shot is allowed once every ``FIRE_INTERVAL_INPUTS`` inputs, and a
client must only set the bit when its weapon is ready (``Weapon.cooldown == 0``;
``examples.coop.fire_ready``).
Both rules are enforced by the server's movement-sanity hook (``Coop.check_input``).

Goals: a fixed-size blob that any language can build; decoding refuses anything else with
:class:`~astranet.game.InputError` (wrong length, reserved bits set), never another exception.
Limits: exactly ``INPUT_BYTES`` bytes.
Benchmark: none (4 bytes; the per-tick cost is in benchmarks/coop_tick.py).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from astranet.game import InputError

__all__ = [
    "FIRE",
    "INPUT_BYTES",
    "MAX_MOVE_SQ",
    "STAND_STILL",
    "Command",
    "aim_code",
    "decode_command",
    "encode_command",
    "encode_input",
]

_LAYOUT = struct.Struct("<bbBB")
INPUT_BYTES = _LAYOUT.size
FIRE = 0x01
_KNOWN_BUTTONS = FIRE
# Longest legal move vector, squared: full speed is a unit vector scaled by 127.
MAX_MOVE_SQ = 127 * 127
_AIM_STEPS = 256


@dataclass(frozen=True, slots=True)
class Command:
    """One decoded input: a move direction (x127), an aim (1/256 turns) and the fire button."""

    move_x: int = 0
    move_y: int = 0
    aim: int = 0
    fire: bool = False

    @property
    def move_sq(self) -> int:
        return self.move_x * self.move_x + self.move_y * self.move_y

    @property
    def aim_radians(self) -> float:
        return self.aim * (2.0 * math.pi / _AIM_STEPS)


#: "Stand still, do not fire": applied for undecodable or refused input.
STAND_STILL = Command()


# Commands already decoded, by blob: a player holds the same stick, aim and trigger for many
# inputs in a row, and a Command is immutable, so a repeated blob skips the parse and the
# dataclass construction (~1 us of an input's ~8). Only valid bytes blobs are kept (hashable,
# immutable); a client cycling through many distinct blobs just refills it from empty.
_DECODED: dict[bytes, Command] = {}
_DECODED_LIMIT = 4096


def decode_command(blob: bytes) -> Command:
    """Parse one input blob; raises :class:`InputError` for anything but a valid 4-byte blob."""
    command = _DECODED.get(blob) if type(blob) is bytes else None
    if command is not None:
        return command
    command = _parse(blob)
    if type(blob) is bytes:
        if len(_DECODED) >= _DECODED_LIMIT:
            _DECODED.clear()
        _DECODED[blob] = command
    return command


def _parse(blob: bytes) -> Command:
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise InputError(f"coop input must be bytes, got {type(blob).__name__}")
    if len(blob) != INPUT_BYTES:
        raise InputError(f"coop input is {INPUT_BYTES} bytes, got {len(blob)}")
    move_x, move_y, aim, buttons = _LAYOUT.unpack(blob)
    if buttons & ~_KNOWN_BUTTONS:
        raise InputError(f"coop input sets reserved button bits: {buttons:#04x}")
    return Command(move_x, move_y, aim, bool(buttons & FIRE))


def encode_command(command: Command) -> bytes:
    """The blob of ``command`` (raises :class:`InputError` if a field is out of its range)."""
    try:
        return _LAYOUT.pack(
            command.move_x, command.move_y, command.aim, FIRE if command.fire else 0
        )
    except struct.error as exc:
        raise InputError(f"command does not fit the coop input layout: {command}") from exc


def aim_code(aim_radians: float) -> int:
    """An aim angle in radians as the blob's aim byte (1/256 of a turn; 0 is +x)."""
    turns = aim_radians / (2.0 * math.pi) if math.isfinite(aim_radians) else 0.0
    return round((turns - math.floor(turns)) * _AIM_STEPS) % _AIM_STEPS


def encode_input(dx: float, dy: float, aim_radians: float = 0.0, fire: bool = False) -> bytes:
    """The blob for a direction (clamped to the unit disc, so never an impossible speed), an
    aim angle in radians and the fire button."""
    if not (math.isfinite(dx) and math.isfinite(dy)):
        dx = dy = 0.0
    length = math.hypot(dx, dy)
    if length > 1.0:
        dx, dy = dx / length, dy / length
    # Truncating toward zero (not rounding) keeps move_x**2 + move_y**2 <= 127**2: rounding
    # the unit diagonal gives (90, 90), which is longer than 127.
    move_x = max(-127, min(127, int(dx * 127)))
    move_y = max(-127, min(127, int(dy * 127)))
    return encode_command(Command(move_x, move_y, aim_code(aim_radians), fire))
