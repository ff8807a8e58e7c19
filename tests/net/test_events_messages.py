"""The event channel on the wire: asked for in Hello, granted in HelloAck, Events validated."""

from __future__ import annotations

import msgpack
import pytest

from astranet.errors import InvalidState, MalformedMessage
from astranet.net import messages as m
from astranet.net.server_conn import ServerConnection


def _replies(conn: ServerConnection) -> list[m.Message]:
    return [m.decode_server_message(b) for b in conn.data_to_send()]


def test_events_are_granted_only_when_asked() -> None:
    asked = ServerConnection()
    asked.receive_data(m.encode(m.Hello(1, events=True)))
    assert _replies(asked) == [m.HelloAck(1, events=True)] and asked.events
    plain = ServerConnection()
    plain.receive_data(m.encode(m.Hello(1)))
    ack = plain.data_to_send()
    assert ack == [m.encode(m.HelloAck(1))] and not plain.events
    assert b"events" not in ack[0]  # a v1 client sees the v1 HelloAck


def test_events_round_trip_and_only_go_out_in_a_room() -> None:
    msg = m.Events(7, ((100, "hit", b"\x01"), (101, "wave", b"")))
    assert m.decode_server_message(m.encode(msg)) == msg
    conn = ServerConnection()
    conn.receive_data(m.encode(m.Hello(1, events=True)))
    with pytest.raises(InvalidState):
        conn.send(msg)  # not before JoinAccepted


@pytest.mark.parametrize(
    "events",
    [[], [[1, "", b""]], [[1, "x" * 65, b""]], [[1, "ok", bytes(4097)]], [[-1, "ok", b""]], [1]],
)
def test_bad_events_messages_are_malformed(events: list[object]) -> None:
    wire = msgpack.packb({"t": "Events", "first_seq": 1, "events": events})
    with pytest.raises(MalformedMessage):
        m.decode_server_message(wire)


KEY = bytes(range(32))


def _in_room(events: bool, **kwargs: object) -> ServerConnection:
    conn = ServerConnection(**kwargs)  # type: ignore[arg-type]
    conn.receive_data(m.encode(m.Hello(1, events=True if events else None)))
    conn.send(m.JoinAccepted("ROOM0001", "p1", 30, KEY, b"tok", 7))
    conn.data_to_send()
    conn.messages_received()
    return conn


def _command(seq: int, kind: str, data: bytes, key: bytes = KEY) -> m.Command:
    from astranet.net.signing import command_key, sign_command

    return m.Command(seq, kind, data, sign_command(command_key(key), seq, kind, data))


def test_a_signed_command_is_surfaced() -> None:
    conn = _in_room(events=True)
    command = _command(1, "say", b"hi")
    conn.receive_data(m.encode(command))
    assert conn.messages_received() == [command]
    assert conn.close_expected() is None


def test_a_badly_signed_command_is_a_kick_under_the_default_policy() -> None:
    conn = _in_room(events=True)
    conn.receive_data(m.encode(_command(1, "say", b"hi", key=bytes(32))))
    assert conn.messages_received() == []
    assert conn.close_expected() == (1008, "command signature verification failed")
    warned = _in_room(events=True, sig_failure_policy="warn")
    warned.receive_data(m.encode(_command(1, "say", b"hi", key=bytes(32))))
    assert warned.messages_received() == [] and warned.close_expected() is None
    assert [r.code for r in map(m.decode_server_message, warned.data_to_send())] == [
        "bad_signature"
    ]


def test_a_command_without_the_event_channel_is_out_of_phase() -> None:
    conn = _in_room(events=False)
    conn.receive_data(m.encode(_command(1, "say", b"hi")))
    assert conn.messages_received() == []
    assert [r.code for r in map(m.decode_server_message, conn.data_to_send())] == ["bad_request"]
