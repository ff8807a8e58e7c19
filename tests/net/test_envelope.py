"""WIRE A1 envelopes: a spliced Snapshot equals the message encoder's bytes; compact round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from astranet.errors import LocalProtocolError, MalformedMessage, UnknownMessageType
from astranet.net import messages as m
from astranet.net.envelope import SnapshotEnvelope, is_compact, parse_compact
from astranet.net.limits import MAX_SNAPSHOT_PAYLOAD_BYTES, U32_MAX, U64_MAX
from astranet.varint import leb128

u32 = st.integers(0, U32_MAX)
u64 = st.integers(0, U64_MAX)
payloads = st.binary(max_size=600)


@given(u32, u64, st.none() | u32, st.booleans(), payloads, st.none() | u32)
def test_map_envelope_is_exactly_the_v1_encoding(
    snapshot_id: int, tick: int, base: int | None, compressed: bool, payload: bytes, seq: int | None
) -> None:
    envelope = SnapshotEnvelope(snapshot_id, tick, base, compressed, payload)
    expected = m.Snapshot(snapshot_id, tick, base, compressed, payload, seq)
    assert envelope.encode(seq) == m.encode(expected)


@given(u32, u64, st.none() | u32, st.booleans(), payloads, st.none() | u32)
def test_compact_envelope_decodes_to_the_same_snapshot(
    snapshot_id: int, tick: int, base: int | None, compressed: bool, payload: bytes, seq: int | None
) -> None:
    envelope = SnapshotEnvelope(snapshot_id, tick, base, compressed, payload)
    data = envelope.encode(seq, compact=True)
    expected = m.Snapshot(snapshot_id, tick, base, compressed, payload, seq)
    assert m.decode_server_message(data) == expected
    # A base above the id has no delta form: that one snapshot goes out as a map.
    assert is_compact(data) == (base is None or base <= snapshot_id)


def test_one_envelope_serves_clients_with_different_seqs() -> None:
    envelope = SnapshotEnvelope(9, 300, 8, True, b"\x04" * 40)
    for seq in (None, 0, 127, 128, 0x3FFF, 0x4000, 65535, 65536, U32_MAX):
        assert m.decode_server_message(envelope.encode(seq, True)).last_input_seq == seq
        assert m.decode_server_message(envelope.encode(seq)).last_input_seq == seq


@pytest.mark.parametrize("compact", [False, True])
def test_parts_are_the_encoding_in_two_pieces(compact: bool) -> None:
    envelope = SnapshotEnvelope(700, 300, 690, True, b"\x04" * 40)
    for seq in (None, 0, 127, 128, 0x3FFF, 0x4000, U32_MAX):
        head, tail = envelope.parts(seq, compact)
        assert head + tail == envelope.encode(seq, compact)
        if compact:  # byte for byte as docs/protocol.md spells it
            fields = leb128(700) + leb128(300) + leb128(10)
            flags = 0x03 if seq is None else 0x07
            spliced = b"" if seq is None else leb128(seq)
            assert head + tail == bytes((0xC1, flags)) + fields + spliced + b"\x04" * 40


def test_compact_is_much_smaller_than_the_map() -> None:
    envelope = SnapshotEnvelope(1000, 90_000, 999, True, b"")
    assert len(envelope.encode(2000, True)) == 10
    assert len(envelope.encode(2000)) == 86


def test_oversized_payload_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        SnapshotEnvelope(1, 1, None, False, bytes(MAX_SNAPSHOT_PAYLOAD_BYTES + 1))


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",  # no flags byte
        b"\xc1\x00",  # no id
        b"\xc1\x00\x80",  # id runs past the end
        b"\xc1\x00\xff\xff\xff\xff\x7f\x00",  # id over u32
        b"\xc1\x00\x80\x80\x80\x80\x80\x01\x00",  # id varint longer than 5 bytes
        b"\xc1\x02\x01\x01\x05",  # base delta 5 > id 1
        b"\xc1\x04\x01\x01",  # last_input_seq flagged but missing
    ],
)
def test_malformed_compact_snapshots_are_refused(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        m.decode_server_message(data)


def test_unknown_compact_kind_is_unknown_type() -> None:
    with pytest.raises(UnknownMessageType):
        parse_compact(b"\xc1\x10\x01\x01")


@given(u64)
def test_leb128_round_trips(value: int) -> None:
    encoded = leb128(value)
    assert len(encoded) == max(1, -(-value.bit_length() // 7))
    snapshot = parse_compact(b"\xc1\x00\x00" + encoded)
    assert snapshot[1] == value
