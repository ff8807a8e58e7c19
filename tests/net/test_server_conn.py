"""ServerConnection, rule by rule, speaking bytes: feed messages, assert on what comes out."""

from __future__ import annotations

import msgpack
import pytest

from astranet.errors import InvalidState, LocalProtocolError, RoomFull, Unauthorized
from astranet.net import messages as m
from astranet.net.limits import MAX_INPUT_SEQ_JUMP, U32_MAX
from astranet.net.ratelimit import RateLimitConfig
from astranet.net.server_conn import ServerConnection, ServerPhase
from astranet.net.signing import sign
from astranet.testing import FakeClock

KEY = bytes(range(32))
ROOM = "Room0001"
HELLO = m.encode(m.Hello(1))


def replies(conn: ServerConnection) -> list[m.Message]:
    return [m.decode_server_message(data) for data in conn.data_to_send()]


def frame(seq: int, tick_ms: int = 1000, blob: bytes = b"\x01", key: bytes = KEY) -> bytes:
    return m.encode(m.InputFrame(seq, tick_ms, blob, sign(key, seq, tick_ms, blob)))


def in_lobby(**kwargs) -> ServerConnection:
    conn = ServerConnection(**kwargs)
    conn.receive_data(HELLO)
    assert conn.messages_received() == [m.Hello(1)]
    assert replies(conn) == [m.HelloAck(1)]
    return conn


def in_room(last_input_seq: int | None = None, **kwargs) -> ServerConnection:
    conn = in_lobby(**kwargs)
    conn.send(m.JoinAccepted(ROOM, "p1", 30, KEY, b"tok", 7), last_input_seq=last_input_seq)
    assert replies(conn)[0].TYPE == "JoinAccepted"
    assert conn.phase is ServerPhase.IN_ROOM
    return conn


# ------------------------------------------------------------------- rule 1: handshake


def test_hello_is_acked_and_surfaced() -> None:
    conn = in_lobby()
    assert conn.phase is ServerPhase.LOBBY
    assert conn.close_expected() is None


@pytest.mark.parametrize(
    "first",
    [
        m.encode(m.Ping(1, 2)),
        m.encode(m.Leave()),
        b"\xc1garbage",
        msgpack.packb({"t": "Hello", "protocol": "1"}),
        msgpack.packb({"t": "Nope"}),
        "text",
    ],
)
def test_anything_but_hello_first_is_expected_hello_then_1002(first) -> None:
    conn = ServerConnection()
    conn.receive_data(first)
    assert replies(conn) == [m.ErrorMessage("expected_hello", "expected Hello")]
    assert conn.close_expected() == (1002, "expected Hello")
    assert conn.messages_received() == []
    # After the close decision, input is ignored and sending is refused.
    conn.receive_data(HELLO)
    assert conn.data_to_send() == [] and conn.messages_received() == []
    with pytest.raises(InvalidState):
        conn.send(m.Pong(1, 2, 3, 4))


def test_wrong_version_is_protocol_mismatch_then_1002() -> None:
    conn = ServerConnection()
    conn.receive_data(m.encode(m.Hello(2)))
    message = "protocol mismatch: client=2, server=1"
    assert replies(conn) == [m.ErrorMessage("protocol_mismatch", message)]
    assert conn.close_expected() == (1002, message)
    assert conn.phase is ServerPhase.CLOSED


def test_second_hello_is_a_bad_request_strike() -> None:
    conn = in_lobby()
    conn.receive_data(HELLO)
    [reply] = replies(conn)
    assert reply.code == "bad_request"
    assert conn.stats.malformed == 1 and conn.close_expected() is None


# ---------------------------------------------------------- lobby requests and phases


@pytest.mark.parametrize(
    "request_", [m.FindOrCreate("us-east", "coop", 2), m.JoinRoom(ROOM), m.Resume(ROOM, "p", b"t")]
)
def test_a_request_is_surfaced_then_matching_refuses_a_second(request_: m.Message) -> None:
    conn = in_lobby()
    conn.receive_data(m.encode(request_))
    conn.receive_data(m.encode(m.Ping(9, 10)))
    assert [type(x) for x in conn.messages_received()] == [type(request_), m.Ping]
    assert conn.phase is ServerPhase.MATCHING
    conn.receive_data(m.encode(m.FindOrCreate("us-east", "coop", 1)))
    [reply] = replies(conn)
    assert reply.code == "bad_request" and conn.stats.malformed == 1
    assert conn.messages_received() == []


def test_matching_ends_with_a_refusal_a_redirect_or_join_accepted() -> None:
    conn = in_lobby()
    conn.receive_data(m.encode(m.JoinRoom(ROOM)))
    conn.send_error(RoomFull("room is full"))
    assert conn.phase is ServerPhase.LOBBY  # refused: may ask again
    conn.receive_data(m.encode(m.JoinRoom(ROOM)))
    conn.send(m.MatchResult(ROOM, "ws://other:8788", b"seat"))
    assert conn.phase is ServerPhase.LOBBY  # redirected: nothing more here
    conn.receive_data(m.encode(m.FindOrCreate("us-east", "coop", 1)))
    conn.send(m.MatchResult(ROOM))
    assert conn.phase is ServerPhase.MATCHING  # v1 MatchResult: JoinAccepted follows
    assert [type(x) for x in conn.messages_received()] == [m.JoinRoom] * 2 + [m.FindOrCreate]


def test_refusals_are_replied_without_strike() -> None:
    conn = in_lobby(max_malformed=1)
    bad_party = {"t": "FindOrCreate", "region": "us-east", "game_mode": "coop", "party_size": 9}
    for _ in range(3):
        conn.receive_data(msgpack.packb(bad_party))
        conn.receive_data(msgpack.packb({"t": "JoinRoom", "room_id": "nonexistent"}))
    codes = [(r.code, r.message) for r in replies(conn)]
    assert codes[0] == ("bad_request", "party_size must be 1-4, got 9")
    assert codes[1] == ("room_not_found", "room ID does not exist")
    assert len(codes) == 6
    assert conn.close_expected() is None and conn.stats.malformed == 0
    assert conn.messages_received() == []


@pytest.mark.parametrize("early", [m.Ack(1), m.InputFrame(1, 1, b"", bytes(16))])
def test_input_and_ack_before_join_are_bad_request_strikes(early: m.Message) -> None:
    conn = in_lobby()
    conn.receive_data(m.encode(early))
    [reply] = replies(conn)
    assert reply.code == "bad_request"
    assert f"{early.TYPE} is not allowed" in reply.message
    assert conn.messages_received() == []
    assert conn.stats.malformed == 1


def test_matchmaking_after_join_is_bad_request() -> None:
    conn = in_room()
    conn.receive_data(m.encode(m.JoinRoom(ROOM)))
    assert replies(conn)[0].code == "bad_request"


def test_send_checks_phase() -> None:
    conn = in_lobby()
    with pytest.raises(InvalidState):
        conn.send(m.Snapshot(1, 1, None, False, b""))
    with pytest.raises(LocalProtocolError):
        conn.send(m.Pong(1, 2, 3, 4), last_input_seq=3)
    conn.send(m.MatchResult(ROOM))
    conn.send(m.ErrorMessage("room_full", "room is full"))
    assert [r.TYPE for r in replies(conn)] == ["MatchResult", "ProtocolError"]


def test_leave_is_surfaced_then_close_1000() -> None:
    conn = in_room()
    conn.receive_data(m.encode(m.Leave()))
    assert conn.messages_received() == [m.Leave()]
    assert conn.close_expected() == (1000, "leave")


def test_shell_fail_closes_and_first_close_wins() -> None:
    conn = in_room()
    conn.fail(1001, "server shutting down")
    conn.fail(1000, "later")
    assert conn.close_expected() == (1001, "server shutting down")
    with pytest.raises(InvalidState):
        conn.send(m.Pong(1, 2, 3, 4))


def test_ping_comes_out_as_an_event() -> None:
    conn = in_room()
    conn.receive_data(m.encode(m.Ping(77, 123)))
    assert conn.messages_received() == [m.Ping(77, 123)]
    conn.send(m.Pong(77, 123, 1_700_000_000_000, 5))
    assert replies(conn) == [m.Pong(77, 123, 1_700_000_000_000, 5)]


# ------------------------------------------------------------- rule 3: signed input


def test_signed_frames_come_out_verified() -> None:
    conn = in_room()
    conn.receive_data(frame(1))
    conn.receive_data(frame(5))  # gaps allowed
    assert [f.seq for f in conn.messages_received()] == [1, 5]
    assert conn.last_input_seq == 5
    assert conn.stats.inputs_accepted == 2


@pytest.mark.parametrize(
    ("bad", "reason", "code"),
    [
        (frame(1, key=bytes(32)), "input frame signature verification failed", "bad_signature"),
        (
            frame(1, blob=b"\x02")[:-16] + sign(KEY, 1, 1000, b"\x01"),
            "input frame signature verification failed",
            "bad_signature",
        ),
        (frame(3), "input frame replayed", "replay"),
        (frame(2), "input frame replayed", "replay"),
    ],
)
def test_bad_frames_kick_or_warn(bad: bytes, reason: str, code: str) -> None:
    kick = in_room()
    kick.receive_data(frame(3))
    kick.messages_received()
    kick.receive_data(bad)
    assert kick.close_expected() == (1008, reason)
    assert kick.messages_received() == [] and kick.data_to_send() == []

    warn = in_room(sig_failure_policy="warn")
    warn.receive_data(frame(3))
    warn.messages_received()
    warn.receive_data(bad)
    assert replies(warn) == [m.ErrorMessage(code, reason)]
    assert warn.close_expected() is None and warn.messages_received() == []
    warn.receive_data(frame(4))  # the connection stays usable
    assert [f.seq for f in warn.messages_received()] == [4]
    assert warn.stats.signature_failures + warn.stats.replays == 1


def test_resume_continues_the_replay_guard_with_a_new_key() -> None:
    conn = in_room(last_input_seq=41)
    conn.receive_data(frame(41))
    assert conn.close_expected() == (1008, "input frame replayed")
    conn = in_room(last_input_seq=41)
    conn.receive_data(frame(42))
    assert [f.seq for f in conn.messages_received()] == [42]


def test_bad_policy_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        ServerConnection(sig_failure_policy="ignore")  # type: ignore[arg-type]


# ------------------------------------------------------------------ rule 5: rate limit


def test_flood_gets_bounded_rate_limited_replies_then_1008() -> None:
    clock = FakeClock()
    config = RateLimitConfig(rate_per_s=10, burst=5, reply_interval_s=0.1, max_drops=20)
    conn = in_room(clock=clock, rate_limit=config)  # Hello took one token
    ping = m.encode(m.Ping(1, 1))
    for _ in range(4):
        conn.receive_data(ping)
    assert len(conn.messages_received()) == 4
    for _ in range(20):  # all at one instant: dropped, one reply only
        conn.receive_data(ping)
    assert conn.messages_received() == []
    assert replies(conn) == [m.RateLimited(100)]
    assert conn.stats.rate_limited == 20
    clock.now += 0.1  # one token back: one message passes
    conn.receive_data(ping)
    assert conn.messages_received() == [m.Ping(1, 1)]
    for _ in range(30):
        conn.receive_data(b"\xc1")  # garbage is charged before decoding
    assert conn.close_expected() == (1008, "rate limit exceeded")
    assert conn.stats.malformed == 0


# --------------------------------------------------------------- rule 6: bad input


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xc1", "malformed"),
        (b"\x93\x01\x02\x03", "malformed"),
        (msgpack.packb({"t": "Ack", "snapshot_id": True}), "malformed"),
        ("text frame", "malformed"),
        (msgpack.packb({"t": "Teleport"}), "unknown_type"),
        (m.encode(m.Pong(1, 2, 3, 4)), "unknown_type"),
    ],
)
def test_bad_input_is_replied_and_connection_stays(data, code: str) -> None:
    conn = in_room()
    conn.receive_data(data)
    [reply] = replies(conn)
    assert reply.code == code and reply.message
    assert conn.close_expected() is None
    conn.receive_data(frame(1))
    assert len(conn.messages_received()) == 1


def test_too_many_strikes_close_1008() -> None:
    clock = FakeClock()
    conn = in_room(max_malformed=3, clock=clock)
    for _ in range(3):
        conn.receive_data(b"\xc1")
    assert conn.close_expected() is None
    conn.receive_data(b"\xc1")
    assert conn.close_expected() == (1008, "too many malformed messages")
    assert conn.stats.malformed == 4


def test_strikes_are_forgiven_over_time() -> None:
    clock = FakeClock()
    conn = in_room(max_malformed=3, clock=clock)
    for _ in range(10):
        conn.receive_data(b"\xc1")
        clock.now += 60.0
    assert conn.close_expected() is None


def test_oversize_closes_1009_without_reply() -> None:
    conn = in_room(max_message_bytes=1024)
    conn.receive_data(b"\x00" * 1025)
    assert conn.close_expected()[0] == 1009
    assert conn.data_to_send() == []


def test_stats_count_bytes_and_messages() -> None:
    conn = in_room()
    data = frame(1)
    conn.receive_data(data)
    assert conn.stats.messages_in == 2
    assert conn.stats.bytes_in == len(HELLO) + len(data)
    assert conn.stats.messages_out == 2  # HelloAck, JoinAccepted


def test_send_error_replies_with_the_exception_code_truncated() -> None:
    from astranet.errors import RoomFull, UnknownRegion

    conn = in_lobby()
    conn.send_error(UnknownRegion("unknown region; served: " + ", ".join(["us-east"] * 300)))
    conn.send_error(RoomFull("room is full"))
    first, second = replies(conn)
    assert first.code == "unknown_region" and len(first.message) == 1024
    assert second == m.ErrorMessage("room_full", "room is full")
    assert conn.close_expected() is None and conn.stats.malformed == 0


# ------------------------------------------------------------------- WIRE A1


def test_compact_is_granted_when_asked() -> None:
    conn = ServerConnection()
    conn.receive_data(m.encode(m.Hello(1, compact=True)))
    assert replies(conn) == [m.HelloAck(1, compact=True)]
    assert conn.compact


def test_compact_refusal_says_so() -> None:
    conn = ServerConnection(allow_compact=False)
    conn.receive_data(m.encode(m.Hello(1, compact=True)))
    assert replies(conn) == [m.HelloAck(1, compact=False)]
    assert not conn.compact


def test_a_client_that_does_not_ask_gets_the_v1_hello_ack() -> None:
    conn = in_lobby()
    assert not conn.compact
    assert m.encode(m.HelloAck(1)) == m.encode(m.HelloAck(1, None))  # no "compact" key


def test_folded_ack_comes_out_in_its_frame_and_costs_one_token() -> None:
    conn = in_room(rate_limit=RateLimitConfig(rate_per_s=1e-9, burst=3))
    blob = b"\x01"
    data = m.encode(m.InputFrame(1, 1000, blob, sign(KEY, 1, 1000, blob), ack=17))
    conn.receive_data(data)
    signed = m.InputFrame(1, 1000, blob, sign(KEY, 1, 1000, blob), 17)
    assert conn.messages_received() == [signed]  # one message: the shell applies .ack
    assert conn.stats.rate_limited == 0
    assert conn._flood._bucket.tokens == pytest.approx(1.0)  # Hello + one frame of 3


def test_a_refused_frame_takes_its_ack_with_it() -> None:
    conn = in_room(sig_failure_policy="warn")
    blob = b"\x01"
    conn.receive_data(m.encode(m.InputFrame(1, 1000, blob, bytes(16), ack=3)))
    assert conn.messages_received() == []
    assert replies(conn)[0] == m.ErrorMessage(
        "bad_signature", "input frame signature verification failed"
    )


# ---------------------------------------------------- A4: authentication and seq window


def _authenticate(token: str | None) -> str:
    if token != "good":
        raise Unauthorized("unauthorized: wrong signature")
    return "alice"


@pytest.mark.parametrize(
    ("hello", "upgrade_token"),
    [(m.Hello(1, token="good"), None), (m.Hello(1), "good"), (m.Hello(1, token="good"), "bad")],
)
def test_authenticated_hello_is_acked_with_identity(
    hello: m.Hello, upgrade_token: str | None
) -> None:
    conn = ServerConnection(authenticate=_authenticate, upgrade_token=upgrade_token)
    conn.receive_data(m.encode(hello))
    assert replies(conn) == [m.HelloAck(1)]
    assert conn.identity == "alice" and conn.phase is ServerPhase.LOBBY


@pytest.mark.parametrize("hello", [m.Hello(1), m.Hello(1, token="bad")])
def test_unauthorized_hello_is_refused_then_closed_1008_without_helloack(hello: m.Hello) -> None:
    conn = ServerConnection(authenticate=_authenticate)
    conn.receive_data(m.encode(hello))
    assert replies(conn) == [m.ErrorMessage("unauthorized", "unauthorized: wrong signature")]
    assert conn.close_expected() == (1008, "unauthorized: wrong signature")
    assert conn.messages_received() == [] and conn.identity is None


def test_seq_beyond_the_window_is_refused_unapplied_and_the_seat_keeps_working() -> None:
    conn = in_room()
    conn.receive_data(frame(U32_MAX))  # correctly signed, would lock the guard forever
    assert [e.code for e in replies(conn)] == ["bad_request"]  # type: ignore[attr-defined]
    assert conn.messages_received() == [] and conn.close_expected() is None
    assert conn.stats.seq_jumps == 1 and conn.last_input_seq is None
    conn.receive_data(frame(MAX_INPUT_SEQ_JUMP))  # the edge of the window from 0 is fine
    conn.receive_data(frame(2 * MAX_INPUT_SEQ_JUMP))
    conn.receive_data(frame(2 * MAX_INPUT_SEQ_JUMP + 1))
    assert [f.seq for f in conn.messages_received()] == [  # type: ignore[attr-defined]
        MAX_INPUT_SEQ_JUMP,
        2 * MAX_INPUT_SEQ_JUMP,
        2 * MAX_INPUT_SEQ_JUMP + 1,
    ]
