"""InputFrame.view_tick/view_frac: optional, validated, signed, and invisible to v1 frames."""

from __future__ import annotations

import msgpack
import pytest

from astranet.errors import MalformedMessage
from astranet.net import messages as m
from astranet.net.signing import InputSigner, sign

KEY = bytes(range(32))


def test_a_frame_without_a_view_encodes_as_v1() -> None:
    frame = m.InputFrame(1, 2, b"ab", sign(KEY, 1, 2, b"ab"))
    assert set(msgpack.unpackb(m.encode(frame))) == {"t", "seq", "tick_ms", "input_blob", "sig"}
    assert frame.view is None


def test_view_round_trips_and_frac_defaults_to_zero() -> None:
    frame = m.InputFrame(1, 2, b"ab", bytes(16), 77, 5)
    assert m.decode_client_message(m.encode(frame)) == frame
    wire = {"t": "InputFrame", "seq": 1, "tick_ms": 2, "input_blob": b"", "sig": bytes(16)}
    only_tick = m.decode_client_message(msgpack.packb({**wire, "view_tick": 9}))
    assert isinstance(only_tick, m.InputFrame) and only_tick.view == (9, 0)


@pytest.mark.parametrize(
    "extra",
    [{"view_frac": 3}, {"view_tick": 1, "view_frac": 65536}, {"view_tick": -1}, {"view_tick": 1.5}],
)
def test_bad_views_are_malformed(extra: dict[str, object]) -> None:
    wire = {"t": "InputFrame", "seq": 1, "tick_ms": 2, "input_blob": b"", "sig": bytes(16)}
    with pytest.raises(MalformedMessage):
        m.decode_client_message(msgpack.packb({**wire, **extra}))


def test_the_session_signer_matches_the_one_shot_signature_with_and_without_view() -> None:
    signer = InputSigner(KEY)
    assert signer.sign(5, 6, b"x") == sign(KEY, 5, 6, b"x")
    assert signer.sign(5, 6, b"x", (7, 8)) == sign(KEY, 5, 6, b"x", (7, 8))
    assert signer.sign(5, 6, b"x", (7, 8)) != signer.sign(5, 6, b"x", (7, 9))
    assert signer.verify(5, 6, b"x", sign(KEY, 5, 6, b"x", (7, 8)), (7, 8))
    assert not signer.verify(5, 6, b"x", sign(KEY, 5, 6, b"x", (7, 8)))
