"""The schema check at join, sans-I/O: Hello.schema (server side), JoinAccepted.schema (client)."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import msgpack
import pytest

from astranet.errors import InvalidState, LocalProtocolError, MalformedMessage, SchemaMismatch
from astranet.game import load_game
from astranet.net import messages as m
from astranet.net.client_conn import ClientConnection, ClientPhase
from astranet.net.server_conn import ServerConnection, ServerPhase

KEY = bytes(range(32))
OURS, THEIRS = 0x1234ABCD, 0x0BADF00D


def replies(conn: ServerConnection) -> list[m.Message]:
    return [m.decode_server_message(data) for data in conn.data_to_send()]


@pytest.mark.parametrize("client_schema", [OURS, None])
def test_a_hello_with_our_schema_or_none_is_accepted(client_schema: int | None) -> None:
    conn = ServerConnection(schema_fingerprint=OURS)
    conn.receive_data(m.encode(m.Hello(1, schema=client_schema)))
    assert replies(conn) == [m.HelloAck(1)]
    assert conn.phase is ServerPhase.LOBBY


def test_a_hello_with_another_schema_gets_schema_mismatch_then_1002() -> None:
    conn = ServerConnection(schema_fingerprint=OURS)
    conn.receive_data(m.encode(m.Hello(1, schema=THEIRS)))
    (reply,) = replies(conn)
    assert isinstance(reply, m.ErrorMessage)
    assert reply.code == "schema_mismatch"
    assert "client=0x0badf00d, server=0x1234abcd" in reply.message
    assert "GET /schema" in reply.message
    code, reason = conn.close_expected()
    assert code == 1002
    assert reason.startswith("schema mismatch: client=0x0badf00d, server=0x1234abcd")
    assert conn.messages_received() == []  # the shell never sees the refused Hello


def test_a_server_without_a_schema_accepts_any() -> None:
    conn = ServerConnection()
    conn.receive_data(m.encode(m.Hello(1, schema=THEIRS)))
    assert replies(conn) == [m.HelloAck(1)]


def test_the_client_sends_its_schema_in_hello() -> None:
    client = ClientConnection(schema_fingerprint=OURS)
    client.hello()
    (data,) = client.data_to_send()
    assert m.decode_client_message(data) == m.Hello(1, schema=OURS)


@pytest.mark.parametrize("server_schema", [OURS, None])
def test_join_accepted_with_our_schema_or_none_starts_the_session(
    server_schema: int | None,
) -> None:
    client = ClientConnection(schema_fingerprint=OURS)
    client.hello()
    client.receive_data(
        m.encode(m.JoinAccepted("Room0001", "p1", 30, KEY, b"t", 7, schema=server_schema))
    )
    assert client.phase is ClientPhase.IN_ROOM


def test_join_accepted_with_another_schema_is_refused_by_the_client() -> None:
    client = ClientConnection(schema_fingerprint=OURS)
    client.hello()
    client.receive_data(m.encode(m.JoinAccepted("Room0001", "p1", 30, KEY, b"t", 7, schema=THEIRS)))
    assert client.phase is ClientPhase.CLOSED
    assert client.messages_received() == []
    assert isinstance(client.last_error, SchemaMismatch)
    assert "client=0x1234abcd, server=0x0badf00d" in client.last_error.message
    assert client.close_expected()[0] == 1002
    with pytest.raises(InvalidState):  # the session never started
        client.send_input(b"\x00")


def test_the_fields_are_optional_u32s_on_the_wire() -> None:
    with pytest.raises(LocalProtocolError):
        m.Hello(1, schema=-1)
    with pytest.raises(MalformedMessage):
        m.decode_client_message(msgpack.packb({"t": "Hello", "protocol": 1, "schema": "x"}))
    assert m.decode_client_message(m.encode(m.Hello(1))) == m.Hello(1)


def test_the_protocol_docs_example_is_the_dots_schema_byte_for_byte() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text("utf-8")
    block = re.search(r"^```json schema-dots\n(?P<body>.*?)\n```", doc, re.M | re.S)
    assert block is not None
    schema = load_game("astranet.examples.dots:game").schema
    assert block["body"].encode() == schema.canonical_json()
    assert zlib.crc32(block["body"].encode()) == schema.fingerprint
    assert f"`{schema.fingerprint:#010x}` ({schema.fingerprint})" in doc
