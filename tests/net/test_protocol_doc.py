"""docs/protocol.md cannot drift: its hex examples must decode and its vector must verify."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from astranet.net import messages as m
from astranet.net.signing import sign, verify

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
_BLOCK = re.compile(r"^```hex (?P<name>[\w-]+)\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def blocks() -> dict[str, bytes]:
    text = DOC.read_text(encoding="utf-8")
    found = {match["name"]: bytes.fromhex(match["body"]) for match in _BLOCK.finditer(text)}
    assert {
        "vector-key",
        "vector-hmac-input",
        "vector-sig",
        "input-frame",
        "snapshot",
        "hello",
    } <= set(found)
    return found


def test_signed_input_frame_example_decodes_and_verifies(blocks: dict[str, bytes]) -> None:
    frame = m.decode_client_message(blocks["input-frame"])
    assert isinstance(frame, m.InputFrame)
    assert (frame.seq, frame.tick_ms, frame.input_blob) == (
        42,
        1_700_000_000_000,
        b"\x01\x00\xff\x7f",
    )
    key = blocks["vector-key"]
    assert (
        struct.pack("<IQ", frame.seq, frame.tick_ms) + frame.input_blob
        == blocks["vector-hmac-input"]
    )
    assert sign(key, frame.seq, frame.tick_ms, frame.input_blob) == blocks["vector-sig"]
    assert frame.sig == blocks["vector-sig"]
    assert verify(key, frame.seq, frame.tick_ms, frame.input_blob, frame.sig)
    assert m.encode(frame) == blocks["input-frame"]  # the doc shows the canonical encoding


def test_snapshot_example_decodes(blocks: dict[str, bytes]) -> None:
    snap = m.decode_server_message(blocks["snapshot"])
    assert snap == m.Snapshot(5, 1234, 3, False, bytes(range(1, 9)), 42)
    assert m.encode(snap) == blocks["snapshot"]


def test_hello_example_decodes(blocks: dict[str, bytes]) -> None:
    assert m.decode_client_message(blocks["hello"]) == m.Hello(1)


def test_doc_keeps_the_snapshot_payload_section_for_replication() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "\n## Snapshot payload\n" in text


def test_doc_lists_every_message_type() -> None:
    text = DOC.read_text(encoding="utf-8")
    for t in [*m.CLIENT_MESSAGES, *m.SERVER_MESSAGES]:
        assert f"| `{t}` |" in text, t


def test_compact_snapshot_vector_decodes_to_the_map_example(blocks: dict[str, bytes]) -> None:
    """WIRE A1: the doc's compact vector is the map example's Snapshot, and we emit it."""
    from astranet.net.envelope import SnapshotEnvelope, is_compact

    vector = blocks["compact-snapshot"]
    assert is_compact(vector)
    snap = m.decode_server_message(vector)
    assert snap == m.decode_server_message(blocks["snapshot"])
    envelope = SnapshotEnvelope(snap.id, snap.server_tick, snap.base_id, False, snap.payload)
    assert envelope.encode(snap.last_input_seq, compact=True) == vector
    assert envelope.encode(snap.last_input_seq) == blocks["snapshot"]


def test_hello_compact_example_decodes(blocks: dict[str, bytes]) -> None:
    assert m.decode_client_message(blocks["hello-compact"]) == m.Hello(1, compact=True)
    assert m.encode(m.Hello(1, compact=True)) == blocks["hello-compact"]


def test_view_frame_example_decodes_and_verifies(blocks: dict[str, bytes]) -> None:
    from astranet.net.signing import view_key

    key = blocks["vector-key"]
    assert view_key(key) == blocks["view-key"]
    frame = m.decode_client_message(blocks["view-input-frame"])
    assert isinstance(frame, m.InputFrame)
    assert frame.view == (1234, 32768)
    header = struct.pack("<IQQH", frame.seq, frame.tick_ms, 1234, 32768)
    assert header + frame.input_blob == blocks["view-hmac-input"]
    assert frame.sig == blocks["view-sig"]
    assert verify(key, frame.seq, frame.tick_ms, frame.input_blob, frame.sig, frame.view)
    # Stripping the view (a v1 check of the same bytes) fails: the view is signed.
    assert not verify(key, frame.seq, frame.tick_ms, frame.input_blob, frame.sig)
    assert m.encode(frame) == blocks["view-input-frame"]


def test_command_example_verifies(blocks: dict[str, bytes]) -> None:
    from astranet.net.signing import command_key, sign_command

    key = command_key(blocks["vector-key"])
    assert key == blocks["command-key"]
    command = m.decode_client_message(blocks["command-frame"])
    assert command == m.Command(3, "say", b"hi", sign_command(key, 3, "say", b"hi"))
    assert m.encode(command) == blocks["command-frame"]
