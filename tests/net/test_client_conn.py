"""ClientConnection, alone and wired to a ServerConnection in-process (no sockets)."""

from __future__ import annotations

import msgpack
import pytest

from astranet.errors import InvalidState, LocalProtocolError, PayloadTooLarge
from astranet.net import messages as m
from astranet.net.client_conn import ClientConnection, ClientPhase
from astranet.net.envelope import SnapshotEnvelope
from astranet.net.limits import MAX_ACK_HISTORY
from astranet.net.server_conn import ServerConnection, ServerPhase
from astranet.net.signing import sign

KEY = bytes(range(32))
KEY2 = bytes(range(1, 33))
ROOM = "Room0001"


def sent(client: ClientConnection) -> list[m.Message]:
    return [m.decode_client_message(data) for data in client.data_to_send()]


def pump(client: ClientConnection, server: ServerConnection) -> None:
    """Deliver everything queued in both directions, like the asyncio shells would."""
    for data in client.data_to_send():
        server.receive_data(data)
    for data in server.data_to_send():
        client.receive_data(data)


def test_handshake_and_matchmaking_requests_are_pipelined() -> None:
    client = ClientConnection()
    client.hello()
    client.find_or_create("us-east", "coop", party_size=2)
    assert sent(client) == [m.Hello(1), m.FindOrCreate("us-east", "coop", 2)]
    assert client.phase is ClientPhase.AWAIT_HELLO_ACK
    client.receive_data(m.encode(m.HelloAck(1)))
    assert client.phase is ClientPhase.LOBBY
    assert client.messages_received() == [m.HelloAck(1)]


def test_join_accepted_starts_a_session_and_inputs_are_signed() -> None:
    client = ClientConnection()
    client.hello()
    client.receive_data(m.encode(m.HelloAck(1)))
    client.receive_data(m.encode(m.MatchResult(ROOM)))
    assert client.room_id == ROOM
    client.receive_data(m.encode(m.JoinAccepted(ROOM, "p1", 30, KEY, b"tok", 9)))
    assert client.phase is ClientPhase.IN_ROOM
    assert (client.session_key, client.player_id, client.resume_token, client.entity) == (
        KEY,
        "p1",
        b"tok",
        9,
    )
    client.data_to_send()
    assert client.send_input(b"\x01", 1000) == 1
    assert client.send_input(b"\x02", 1033) == 2
    frames = sent(client)
    assert frames[0] == m.InputFrame(1, 1000, b"\x01", sign(KEY, 1, 1000, b"\x01"))
    assert frames[1].seq == 2


def test_calls_out_of_phase_raise_invalid_state() -> None:
    client = ClientConnection()
    with pytest.raises(InvalidState):
        client.send_input(b"", 0)
    with pytest.raises(InvalidState):
        client.find_or_create("us-east", "coop")
    client.hello()
    with pytest.raises(InvalidState):
        client.hello()
    with pytest.raises(InvalidState):
        client.ack(1)
    with pytest.raises(LocalProtocolError):
        client.find_or_create("us-east", "coop", party_size=5)


def test_acks_are_recorded_in_a_bounded_history() -> None:
    client = ClientConnection()
    client.hello()
    client.receive_data(m.encode(m.JoinAccepted(ROOM, "p1", 30, KEY, b"tok")))
    for snapshot_id in range(MAX_ACK_HISTORY + 10):
        client.ack(snapshot_id)
    assert client.last_acked_snapshot_id == MAX_ACK_HISTORY + 9
    assert client.acked_snapshot_ids == tuple(range(10, MAX_ACK_HISTORY + 10))
    assert len(client.data_to_send()) == 1 + MAX_ACK_HISTORY + 10  # Hello + every Ack


def test_bad_server_message_closes_1002_and_oversize_1009() -> None:
    client = ClientConnection()
    client.receive_data(m.encode(m.Leave()))  # a client message from the "server"
    assert client.close_expected()[0] == 1002
    client = ClientConnection(max_message_bytes=16)
    client.receive_data(m.encode(m.Snapshot(1, 1, None, False, bytes(100))))
    assert client.close_expected()[0] == 1009
    assert isinstance(client.last_error, PayloadTooLarge)
    assert client.messages_received() == []


def test_full_session_in_process_with_resume() -> None:
    client, server = ClientConnection(), ServerConnection()
    client.hello()
    client.find_or_create("us-east", "coop")
    pump(client, server)
    assert [type(x) for x in server.messages_received()] == [m.Hello, m.FindOrCreate]
    server.send(m.MatchResult(ROOM))
    server.send(m.JoinAccepted(ROOM, "p1", 30, KEY, b"tok", 3))
    pump(client, server)
    assert client.phase is ClientPhase.IN_ROOM and server.phase is ServerPhase.IN_ROOM
    for tick in range(3):
        client.send_input(bytes([tick]), 1000 + tick)
    client.ping(5, 6)
    pump(client, server)
    assert [type(x) for x in server.messages_received()] == [m.InputFrame] * 3 + [m.Ping]
    last_seq = server.last_input_seq
    assert last_seq == 3

    # The socket drops; a new server connection, same client object, a new session key.
    client.reset_transport()
    server = ServerConnection()
    client.hello()
    client.resume()
    pump(client, server)
    assert server.messages_received()[1] == m.Resume(ROOM, "p1", b"tok")
    server.send(m.JoinAccepted(ROOM, "p1", 30, KEY2, b"tok2", 3), last_input_seq=last_seq)
    pump(client, server)
    assert client.send_input(b"\x09", 2000) == 4  # seq continues across the resume
    client.leave()
    pump(client, server)
    assert [x.seq for x in server.messages_received()[:1]] == [4]
    assert server.close_expected() == (1000, "leave")
    assert server.stats.signature_failures == 0 and server.stats.replays == 0


def test_clock_supplies_default_times() -> None:
    client = ClientConnection(clock=lambda: 12.3456)
    client.hello()
    client.ping(1)
    client.receive_data(m.encode(m.JoinAccepted(ROOM, "p1", 30, KEY, b"tok")))
    client.send_input(b"")
    _, ping, frame = sent(client)
    assert ping == m.Ping(1, 12345)
    assert frame.tick_ms == 12345


def test_a_close_reason_quoting_multibyte_text_fits_a_close_frame() -> None:
    from astranet.net.limits import MAX_CLOSE_REASON_BYTES

    client = ClientConnection()
    client.hello()
    client.receive_data(msgpack.packb({"t": "MatchResult", "room_id": "é" * 40}))
    code, reason = client.close_expected()  # type: ignore[misc]
    assert code == 1002
    assert reason.startswith("bad server message")
    assert len(reason.encode("utf-8")) <= MAX_CLOSE_REASON_BYTES


def test_one_message_per_tick_with_compact_snapshots() -> None:
    """WIRE A1 end to end over the two sans-I/O cores: compact granted, ack folded in."""
    client, server = ClientConnection(), ServerConnection()
    client.hello(compact=True)
    pump(client, server)
    assert client.compact_granted is True and server.compact
    server.send(m.JoinAccepted(ROOM, "p1", 30, KEY, b"tok", 9))
    pump(client, server)
    server.messages_received()
    client.receive_data(SnapshotEnvelope(4, 100, None, False, b"\x00").encode(None, compact=True))
    assert client.messages_received()[-1] == m.Snapshot(4, 100, None, False, b"\x00", None)
    client.send_input(b"\x01", 1000, ack=4)
    pump(client, server)
    received = server.messages_received()
    assert [type(msg) for msg in received] == [m.InputFrame]  # one message, ack inside
    assert received[0].ack == 4 and client.last_acked_snapshot_id == 4
