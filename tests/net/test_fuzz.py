"""Fuzzing the decoders: whatever the bytes, only ``astranet.errors`` types come out.

Cases: random bytes, truncations and bit flips of valid encodings, wrong types in every
field, hand-built headers declaring huge lengths, and nesting bombs.
"""

from __future__ import annotations

import tracemalloc

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.errors import AstranetError, PayloadTooLarge
from astranet.net import messages as m
from tests.net.strategies import client_messages, server_messages

DECODERS = [m.decode_client_message, m.decode_server_message]

# Values of every msgpack family, to put where a field of another type is expected.
WRONG_VALUES = [
    None,
    True,
    False,
    -1,
    2**64 - 1,
    -(2**63),
    1.5,
    "",
    "x" * 40,
    b"",
    b"\x00" * 40,
    [],
    [1],
    {},
    {"a": 1},
    msgpack.ExtType(5, b"xyz"),
]


def decode_or_error(decoder, data) -> m.Message | None:
    """Run ``decoder``; an AstranetError is fine, any other exception fails the test."""
    try:
        return decoder(data)
    except AstranetError:
        return None


@settings(max_examples=3000)
@given(st.binary(max_size=256))
def test_random_bytes(data: bytes) -> None:
    for decoder in DECODERS:
        decode_or_error(decoder, data)


@settings(max_examples=1000)
@given(client_messages | server_messages, st.data())
def test_truncations(msg: m.Message, data: st.DataObject) -> None:
    encoded = m.encode(msg)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    for decoder in DECODERS:
        # A strict prefix of one msgpack object is never a complete message.
        assert decode_or_error(decoder, encoded[:cut]) is None


@settings(max_examples=2000)
@given(client_messages | server_messages, st.data())
def test_bit_flips(msg: m.Message, data: st.DataObject) -> None:
    encoded = bytearray(m.encode(msg))
    flips = data.draw(st.lists(st.integers(0, len(encoded) * 8 - 1), min_size=1, max_size=4))
    for bit in flips:
        encoded[bit // 8] ^= 1 << (bit % 8)
    for decoder in DECODERS:
        decode_or_error(decoder, bytes(encoded))


@settings(max_examples=1000)
@given(client_messages | server_messages, st.data())
def test_wrong_type_in_each_field(msg: m.Message, data: st.DataObject) -> None:
    if not msg.FIELDS:
        return
    wire = msg.to_map()
    field = data.draw(st.sampled_from(msg.FIELDS))
    wire[field] = data.draw(st.sampled_from(WRONG_VALUES))
    packed = msgpack.packb(wire, use_bin_type=True)
    for decoder in DECODERS:
        result = decode_or_error(decoder, packed)
        if result is not None:
            # The value happened to be valid for that field (e.g. a str for a str field):
            # then the decoded message must pass local validation too (same rules both ways).
            assert type(result) is type(msg)
            assert getattr(result, field) == wire[field]
            rebuilt = type(result)(*(getattr(result, name) for name in result.FIELDS))
            assert m.encode(rebuilt) == m.encode(result)


@pytest.mark.parametrize(
    "header",
    [
        b"\xdf\xff\xff\xff\xff",  # map32 with 4G entries
        b"\xde\xff\xff",  # map16
        b"\xdd\xff\xff\xff\xff",  # array32
        b"\xc6\xff\xff\xff\xff",  # bin32
        b"\xdb\xff\xff\xff\xff",  # str32
        b"\xc9\xff\xff\xff\xff\x01",  # ext32
        b"\x81\xa1t\xdb\xff\xff\xff\xff",  # t: str32 of 4 GiB
        b"\x82\xa1t\xa3Ack\xa1x\xdd\x7f\xff\xff\xff",  # huge array as an extra value
    ],
)
def test_huge_declared_lengths_allocate_nothing(header: bytes) -> None:
    for decoder in DECODERS:
        tracemalloc.start()
        try:
            assert decode_or_error(decoder, header + b"\x00" * 16) is None
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 * 1024, f"{header!r} made the decoder allocate {peak} bytes"


@pytest.mark.parametrize("opener", [b"\x91", b"\x81\xa1x", b"\xdc\x00\x01"])
def test_nesting_bombs(opener: bytes) -> None:
    bomb = opener * 30000 + b"\xc0"
    for decoder in DECODERS:
        assert decode_or_error(decoder, bomb) is None


def test_nested_bomb_inside_extra_key() -> None:
    bomb = b"\x82\xa1t\xa3Ack\xa1x" + b"\x91" * 20000 + b"\xc0"
    for decoder in DECODERS:
        assert decode_or_error(decoder, bomb) is None


def test_oversize_garbage_is_too_large_not_malformed() -> None:
    with pytest.raises(PayloadTooLarge):
        m.decode_client_message(b"\xdf\xff\xff\xff\xff" * 20000)
