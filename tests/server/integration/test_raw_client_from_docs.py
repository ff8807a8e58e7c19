"""A client written only from docs/protocol.md (including its "Snapshot payload" section).

It imports nothing from astranet's codec or messages: raw ``websockets`` + ``msgpack`` +
``hmac`` + ``struct``, ``lz4.frame`` for the standard LZ4 frame, and numpy to unpack the
bit-packed snapshot rows by hand. If this test breaks while the rest pass, the server and the
documents disagree.

What the docs did not give us: the dots game's field list (names, encodings, order) is only
in ``astranet/examples/dots/__init__.py`` (``Body``); the layout below is copied from there, as any
client author must copy their game's schema.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import time

import lz4.frame
import msgpack
import numpy as np
import pytest
from websockets.asyncio.client import connect

from .conftest import Running

pytestmark = pytest.mark.timeout(20)

# astranet/examples/dots Body, in schema order: (name, lo, step, code components, bits per code).
# bits = bit length of M = round((hi - lo) / step)
# (protocol.md, "Snapshot payload" > "State model").
DOTS_FIELDS = [
    ("Body.pos", -4096.0, 1 / 512, 2, (8192 * 512).bit_length()),  # M = 4194304 -> 23 bits
    ("Body.vel", -64.0, 1 / 256, 2, (128 * 256).bit_length()),  # M = 32768 -> 16 bits
    ("Body.kind", 0.0, 1.0, 1, (3).bit_length()),  # M = 3 -> 2 bits
]
FLAG_DELTA, FLAG_CHECKSUM = 1, 2


def pack(message: dict) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def unpack(data: bytes) -> dict:
    message = msgpack.unpackb(data, raw=False)
    assert isinstance(message, dict) and isinstance(message["t"], str)
    return message


def signed_input(key: bytes, seq: int, tick_ms: int, blob: bytes) -> dict:
    mac = hmac.new(key, struct.pack("<IQ", seq, tick_ms) + blob, hashlib.sha256).digest()
    return {"t": "InputFrame", "seq": seq, "tick_ms": tick_ms, "input_blob": blob, "sig": mac[:16]}


def read_uleb(buf: bytes, offset: int) -> tuple[int, int]:
    """Unsigned LEB128: 7 bits per byte, least significant group first, high bit = more."""
    value = shift = 0
    while True:
        byte = buf[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, offset


def unpack_run(buf: bytes, offset: int, count: int, width: int) -> tuple[np.ndarray, int]:
    """A packed run: value i is stream bits i*w .. i*w+w-1, LSB first, byte-wise LSB first."""
    size = (count * width + 7) // 8
    if width == 0:
        return np.zeros(count, dtype=np.uint64), offset
    chunk = np.frombuffer(buf, dtype=np.uint8, count=size, offset=offset)
    bits = np.unpackbits(chunk, bitorder="little")[: count * width].reshape(count, width)
    weights = np.left_shift(np.uint64(1), np.arange(width, dtype=np.uint64))
    return (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64), offset + size


def decode_full_payload(payload: bytes, compressed: bool) -> dict[str, np.ndarray]:
    """A full snapshot (base_id nil) -> {"net_id": ids, field name: float array (n, k)}."""
    raw = lz4.frame.decompress(payload) if compressed else payload
    version, flags = raw[0], raw[1]
    field_count, offset = read_uleb(raw, 2)
    assert (version, flags & FLAG_DELTA, field_count) == (2, 0, len(DOTS_FIELDS))
    offset += 4  # the schema fingerprint (u32)
    n_spawn, offset = read_uleb(raw, offset)
    offset += 4 if flags & FLAG_CHECKSUM else 0
    ids = np.frombuffer(raw, dtype="<u4", count=n_spawn, offset=offset)
    offset += 4 * n_spawn
    assert np.all(np.diff(ids.astype(np.int64)) > 0) and np.all(ids > 0)
    state: dict[str, np.ndarray] = {"net_id": ids}
    for name, lo, step, components, bits in DOTS_FIELDS:
        columns = []
        for _ in range(components):
            codes, offset = unpack_run(raw, offset, n_spawn, bits)
            columns.append(lo + codes.astype(np.float64) * step)
        state[name] = np.stack(columns, axis=1)
    assert offset == len(raw), "trailing bytes"
    return state


async def test_raw_client_joins_signs_inputs_and_sees_its_avatar_move(running: Running) -> None:
    async with connect(f"ws://127.0.0.1:{running.server.ws_port}") as ws:
        await ws.send(pack({"t": "Hello", "protocol": 1}))
        assert unpack(await ws.recv()) == {"t": "HelloAck", "protocol": 1}
        await ws.send(
            pack({"t": "FindOrCreate", "region": "us-east", "game_mode": "coop", "party_size": 1})
        )
        match = unpack(await ws.recv())
        joined = unpack(await ws.recv())
        assert match["t"] == "MatchResult" and joined["t"] == "JoinAccepted"
        assert joined["room_id"] == match["room_id"] and len(joined["session_key"]) == 32
        key, avatar = joined["session_key"], joined["entity"]

        positions: list[np.ndarray] = []
        seq = 0
        # One input per snapshot (dots input: int8 dx, int8 dy scaled by 127: full right).
        # We never Ack, so every snapshot is full (base_id nil) and decodes on its own.
        while True:
            message = unpack(await ws.recv())
            if message["t"] != "Snapshot":
                continue
            assert message["base_id"] is None
            state = decode_full_payload(message["payload"], message["compressed"])
            row = int(np.searchsorted(state["net_id"], avatar))
            assert state["net_id"][row] == avatar
            positions.append(state["Body.pos"][row])
            if (message["last_input_seq"] or 0) >= 6:
                break
            seq += 1
            await ws.send(
                pack(
                    signed_input(key, seq, time.time_ns() // 1_000_000, struct.pack("<bb", 127, 0))
                )
            )

    moved = positions[-1] - positions[0]
    assert moved[1] == 0.0
    # Six applied inputs of one 1/30 s step at 10 units/s (dots SPEED), on the 1/512 grid.
    assert moved[0] == pytest.approx(6 * 10.0 / 30, abs=2 / 512)
