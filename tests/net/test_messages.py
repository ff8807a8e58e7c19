"""Message classes and codec: round trips, exact typing, limits, refusals, direction."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.errors import (
    BadRequest,
    LocalProtocolError,
    MalformedMessage,
    PayloadTooLarge,
    ResumeDenied,
    RoomNotFound,
    UnknownMessageType,
)
from astranet.net import _fields as f
from astranet.net import messages as m
from astranet.net.limits import MAX_INPUT_BLOB_BYTES, MAX_SNAPSHOT_PAYLOAD_BYTES, U32_MAX, U64_MAX
from tests.net.strategies import (
    CLIENT_STRATEGIES,
    SERVER_STRATEGIES,
    client_messages,
    server_messages,
)

SIG = bytes(16)
KEY = bytes(32)


def pack(wire: dict) -> bytes:
    return msgpack.packb(wire, use_bin_type=True)


# ------------------------------------------------------------------------- round trips


@settings(max_examples=1500)
@given(client_messages)
def test_client_message_round_trip(msg: m.Message) -> None:
    data = m.encode(msg)
    assert m.decode_client_message(data) == msg
    assert m.encode(m.decode_client_message(data)) == data  # deterministic


@settings(max_examples=1500)
@given(server_messages)
def test_server_message_round_trip(msg: m.Message) -> None:
    data = m.encode(msg)
    assert m.decode_server_message(data) == msg
    assert m.encode(m.decode_server_message(data)) == data


def test_registries_cover_wire_md() -> None:
    assert set(m.CLIENT_MESSAGES) == {
        "Hello",
        "FindOrCreate",
        "JoinRoom",
        "Resume",
        "InputFrame",
        "Ack",
        "Ping",
        "Leave",
        "Command",
    }
    assert set(m.SERVER_MESSAGES) == {
        "HelloAck",
        "MatchResult",
        "JoinAccepted",
        "Snapshot",
        "Pong",
        "RateLimited",
        "ProtocolError",
        "Events",
    }
    assert set(CLIENT_STRATEGIES) == set(m.CLIENT_MESSAGES.values())
    assert set(SERVER_STRATEGIES) == set(m.SERVER_MESSAGES.values())
    assert m.ErrorMessage.TYPE == "ProtocolError"


@pytest.mark.parametrize("value", [0, 1, 127, 128, 255, 256, 65535, 65536, U32_MAX])
def test_extreme_u32_and_u64_round_trip(value: int) -> None:
    frame = m.InputFrame(value, U64_MAX - value, b"", SIG)
    assert m.decode_client_message(m.encode(frame)) == frame


def test_messages_are_frozen_and_slotted() -> None:
    ack = m.Ack(3)
    with pytest.raises(AttributeError):
        ack.snapshot_id = 4  # type: ignore[misc]
    assert not hasattr(ack, "__dict__")


def test_encoding_puts_t_first_and_optional_fields_as_nil() -> None:
    data = m.encode(m.Snapshot(1, 2, None, False, b""))
    assert data.startswith(b"\x87\xa1t\xa8Snapshot")
    assert msgpack.unpackb(data)["base_id"] is None


# ------------------------------------------------------------- decoding: accepted forms


def test_any_int_width_is_accepted() -> None:
    # Other clients may encode small ints as uint64 (0xcf) or int8 (0xd0): same value.
    data = b"\x82\xa1t\xa3Ack\xabsnapshot_id\xcf" + (7).to_bytes(8, "big")
    assert m.decode_client_message(data) == m.Ack(7)
    data = b"\x82\xa1t\xa3Ack\xabsnapshot_id\xd0\x07"
    assert m.decode_client_message(data) == m.Ack(7)


def test_unknown_keys_are_ignored_and_optional_fields_may_be_absent() -> None:
    wire = {
        "t": "Snapshot",
        "id": 1,
        "server_tick": 2,
        "compressed": True,
        "payload": b"p",
        "future": [1, 2, {"x": 3}],
    }
    assert m.decode_server_message(pack(wire)) == m.Snapshot(1, 2, None, True, b"p", None)


def test_bytes_like_input_is_accepted() -> None:
    data = m.encode(m.Ack(1))
    assert m.decode_client_message(bytearray(data)) == m.Ack(1)
    assert m.decode_client_message(memoryview(data)) == m.Ack(1)


# ------------------------------------------------------------- decoding: rejected forms


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        ({"t": "Ack", "snapshot_id": True}, "bool is not an int"),
        ({"t": "Ack", "snapshot_id": 1.0}, "float is not an int"),
        ({"t": "Ack", "snapshot_id": -1}, "negative u32"),
        ({"t": "Ack", "snapshot_id": U32_MAX + 1}, "u32 overflow"),
        ({"t": "Ack"}, "missing field"),
        ({"t": "Ack", "snapshot_id": None}, "nil required field"),
        ({"t": "Ping", "nonce": 1, "client_time_ms": "5"}, "str is not an int"),
        ({"t": "InputFrame", "seq": 1, "tick_ms": 1, "input_blob": "x", "sig": SIG}, "str blob"),
        ({"t": "InputFrame", "seq": 1, "tick_ms": 1, "input_blob": b"", "sig": SIG[:15]}, "sig"),
        (
            {
                "t": "InputFrame",
                "seq": 1,
                "tick_ms": 1,
                "input_blob": b"x" * (MAX_INPUT_BLOB_BYTES + 1),
                "sig": SIG,
            },
            "big",
        ),
        ({"t": "Resume", "room_id": "abcdefgh", "player_id": "p", "resume_token": "tok"}, "tok"),
        ({"t": "Resume", "room_id": "abcdefgh", "player_id": "", "resume_token": b""}, "empty"),
        ({"t": "FindOrCreate", "region": b"us", "game_mode": "coop"}, "bin region"),
        ({"t": "FindOrCreate", "region": "us", "game_mode": "coop", "party_size": True}, "bool"),
        ({"t": "Hello", "protocol": -1}, "negative version"),
        ({"t": 1}, "int t"),
        ({"type": "Ack"}, "no t"),
    ],
)
def test_ill_typed_client_fields_are_malformed(wire: dict, why: str) -> None:
    with pytest.raises(MalformedMessage):
        m.decode_client_message(pack(wire))


@pytest.mark.parametrize(
    "wire",
    [
        {
            "t": "Snapshot",
            "id": 1,
            "server_tick": 2,
            "base_id": None,
            "compressed": 1,
            "payload": b"",
        },
        {
            "t": "Snapshot",
            "id": 1,
            "server_tick": 2,
            "compressed": False,
            "payload": b"x" * (MAX_SNAPSHOT_PAYLOAD_BYTES + 1),
        },
        {
            "t": "JoinAccepted",
            "room_id": "abcdefgh",
            "player_id": "p",
            "tick_hz": 30,
            "session_key": bytes(31),
            "resume_token": b"",
        },
        {
            "t": "JoinAccepted",
            "room_id": "abc",
            "player_id": "p",
            "tick_hz": 30,
            "session_key": KEY,
            "resume_token": b"",
        },
        {"t": "MatchResult", "room_id": "abcdefg!"},
        {"t": "ProtocolError", "code": "", "message": "x"},
        {"t": "ProtocolError", "code": "x", "message": "m" * 1025},
    ],
)
def test_ill_typed_server_fields_are_malformed(wire: dict) -> None:
    with pytest.raises(MalformedMessage):
        m.decode_server_message(pack(wire))


def test_non_map_and_non_str_keys_are_malformed() -> None:
    for data in (
        pack([1, 2]),
        pack("Ack"),
        pack(None),
        pack({b"t": "Ack", "snapshot_id": 1}),
        pack({"t": "Ack", "snapshot_id": 1, b"extra": 1}),
    ):
        with pytest.raises(MalformedMessage):
            m.decode_client_message(data)


def test_trailing_bytes_are_malformed() -> None:
    with pytest.raises(MalformedMessage):
        m.decode_client_message(m.encode(m.Ack(1)) + b"\x00")


def test_text_frame_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match="text"):
        m.decode_client_message('{"t": "Hello"}')


def test_oversize_is_refused_before_parsing() -> None:
    # Garbage that would be malformed if parsed: the size check must come first.
    with pytest.raises(PayloadTooLarge) as info:
        m.decode_client_message(b"\xc1" * 65537)
    assert info.value.close_code == 1009
    with pytest.raises(PayloadTooLarge):
        m.decode_client_message(m.encode(m.Ack(1)), max_bytes=4)


def test_unknown_and_wrong_direction_types() -> None:
    with pytest.raises(UnknownMessageType):
        m.decode_client_message(pack({"t": "Teleport"}))
    with pytest.raises(UnknownMessageType):
        m.decode_client_message(m.encode(m.Pong(1, 2, 3, 4)))
    with pytest.raises(UnknownMessageType):
        m.decode_server_message(m.encode(m.Leave()))


# ------------------------------------------------------- refusals (well-formed requests)


@pytest.mark.parametrize("party_size", [0, 5, -1, 2**63, -(2**63)])
def test_party_size_out_of_range_is_bad_request(party_size: int) -> None:
    wire = {"t": "FindOrCreate", "region": "us-east", "game_mode": "coop", "party_size": party_size}
    with pytest.raises(BadRequest) as info:
        m.decode_client_message(pack(wire))
    assert info.value.code == "bad_request"


@pytest.mark.parametrize("mode", ["", "a" * 33, "co op", "coöp"])
def test_bad_game_mode_is_bad_request(mode: str) -> None:
    with pytest.raises(BadRequest):
        m.decode_client_message(
            pack({"t": "FindOrCreate", "region": "r", "game_mode": mode, "party_size": 1})
        )


@pytest.mark.parametrize("room_id", ["", "abc", "abcdefghi", "abcd-fgh", "nonexistent"])
def test_impossible_room_id_is_room_not_found(room_id: str) -> None:
    with pytest.raises(RoomNotFound, match=r"^room ID does not exist$"):
        m.decode_client_message(pack({"t": "JoinRoom", "room_id": room_id}))
    with pytest.raises(ResumeDenied):
        m.decode_client_message(
            pack({"t": "Resume", "room_id": room_id, "player_id": "p", "resume_token": b""})
        )


# ------------------------------------------------------ the compiled rules = the rule table

# Values near every rule's edges (and of every msgpack family) to put into one field.
_EDGE_INTS = [-1, 0, 1, 65535, 65536, U32_MAX, U32_MAX + 1, U64_MAX, U64_MAX + 1]
_EDGE_OTHERS = [None, True, False, 1.0, "", "abcdefgh", "x" * 65, b"", bytes(16), bytes(17)]
EDGE_VALUES = (
    st.sampled_from([*_EDGE_INTS, *_EDGE_OTHERS, bytes(32), (), ((1, "a", b""),)])
    | st.integers()
    | st.binary(max_size=80)
    | st.text(max_size=80)
)


@settings(max_examples=2000)
@given(client_messages | server_messages, st.data())
def test_the_compiled_acceptor_agrees_with_the_rule_walk(
    msg: m.Message, data: st.DataObject
) -> None:
    """The decode fast path accepts exactly what the error-reporting walk accepts."""
    cls = type(msg)
    wire = msg.to_map()
    for name in data.draw(st.lists(st.sampled_from(cls.FIELDS), max_size=2)) if cls.FIELDS else ():
        wire[name] = data.draw(EDGE_VALUES)
    try:
        f.check_rules(cls.RULES, wire.get, MalformedMessage)
    except MalformedMessage:
        assert cls._accept(wire) is None
    else:
        accepted = cls._accept(wire)
        assert accepted is not None
        assert [getattr(accepted, name) for name in cls.FIELDS] == [
            wire.get(name) for name in cls.FIELDS
        ]


def test_every_field_has_a_rule() -> None:
    for cls in (*m.CLIENT_MESSAGES.values(), *m.SERVER_MESSAGES.values()):
        assert [name for name, _ in cls.RULES] == list(cls.FIELDS)


# ------------------------------------------------------------------- local construction


@pytest.mark.parametrize(
    "build",
    [
        lambda: m.Ack(-1),
        lambda: m.Ack(True),
        lambda: m.InputFrame(1, 1, b"", b"short"),
        lambda: m.InputFrame(1, U64_MAX + 1, b"", SIG),
        lambda: m.FindOrCreate("r", "coop", 5),
        lambda: m.FindOrCreate("r", "bad mode"),
        lambda: m.JoinRoom("short"),
        lambda: m.Resume("abcdefgh", "p", "token"),
        lambda: m.JoinAccepted("abcdefgh", "p", 30, bytes(16), b""),
        lambda: m.Snapshot(1, 1, None, 0, b""),
        lambda: m.ErrorMessage("", "x"),
        lambda: m.FindOrCreate("r" * 65, "coop"),
    ],
)
def test_building_a_bad_message_raises_local_protocol_error(build) -> None:
    with pytest.raises(LocalProtocolError):
        build()


def test_largest_snapshot_fits_one_message() -> None:
    biggest = m.Snapshot(
        U32_MAX, U64_MAX, U32_MAX, True, bytes(MAX_SNAPSHOT_PAYLOAD_BYTES), U32_MAX
    )
    data = m.encode(biggest)
    assert len(data) <= 65536
    assert m.decode_server_message(data) == biggest
