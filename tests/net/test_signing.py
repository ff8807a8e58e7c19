"""InputFrame signing (WIRE rule 3): the test vector, verify, InputSigner, ReplayGuard."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.errors import LocalProtocolError, ReplayedInput
from astranet.net.limits import U32_MAX, U64_MAX
from astranet.net.signing import InputSigner, ReplayGuard, sign, verify

# The vector published in docs/protocol.md ("Signing test vector").
VECTOR_KEY = bytes(range(32))
VECTOR_SEQ = 42
VECTOR_TICK_MS = 1_700_000_000_000
VECTOR_BLOB = bytes.fromhex("0100ff7f")
VECTOR_SIGNED_HEADER = bytes.fromhex("2a0000000068e5cf8b010000")
VECTOR_SIG = bytes.fromhex("dd0aecd5a00382c102aa6abd53bf641b")


def test_signing_test_vector() -> None:
    assert struct.pack("<IQ", VECTOR_SEQ, VECTOR_TICK_MS) == VECTOR_SIGNED_HEADER
    assert sign(VECTOR_KEY, VECTOR_SEQ, VECTOR_TICK_MS, VECTOR_BLOB) == VECTOR_SIG
    assert InputSigner(VECTOR_KEY).sign(VECTOR_SEQ, VECTOR_TICK_MS, VECTOR_BLOB) == VECTOR_SIG


def test_zero_vector() -> None:
    assert sign(bytes(32), 0, 0, b"").hex() == "0f3745a9b8c3b5f1013d683d3dae5db3"


@settings(max_examples=500)
@given(
    st.binary(min_size=1, max_size=64),
    st.integers(0, U32_MAX),
    st.integers(0, U64_MAX),
    st.binary(max_size=256),
)
def test_sign_matches_reference_hmac(key: bytes, seq: int, tick_ms: int, blob: bytes) -> None:
    reference = hmac.new(key, struct.pack("<IQ", seq, tick_ms) + blob, hashlib.sha256)
    expected = reference.digest()[:16]
    signer = InputSigner(key)
    assert sign(key, seq, tick_ms, blob) == expected
    assert signer.sign(seq, tick_ms, blob) == expected
    assert verify(key, seq, tick_ms, blob, expected)
    assert signer.verify(seq, tick_ms, blob, expected)
    # Any change to what is signed breaks the signature.
    assert not signer.verify(seq, tick_ms, blob + b"\x00", expected)
    assert not signer.verify(seq ^ 1, tick_ms, blob, expected)
    assert not signer.verify(seq, tick_ms ^ 1, blob, expected)


def test_signer_is_reusable_across_frames() -> None:
    signer = InputSigner(VECTOR_KEY)
    first = signer.sign(1, 2, b"a")
    signer.sign(3, 4, b"b")
    assert signer.sign(1, 2, b"a") == first  # the keyed state was copied, not consumed


def test_wrong_key_and_wrong_length_sig_fail() -> None:
    sig = sign(VECTOR_KEY, 1, 1, b"")
    assert not verify(bytes(32), 1, 1, b"", sig)
    assert not verify(VECTOR_KEY, 1, 1, b"", sig[:15])


def test_out_of_range_header_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        sign(VECTOR_KEY, U32_MAX + 1, 0, b"")
    with pytest.raises(LocalProtocolError):
        InputSigner(VECTOR_KEY).sign(0, -1, b"")


def test_replay_guard_strictly_increasing_with_gaps() -> None:
    guard = ReplayGuard()
    guard.accept(0)
    guard.accept(5)  # gaps allowed
    for stale in (5, 4, 0):
        with pytest.raises(ReplayedInput):
            guard.accept(stale)
    guard.accept(U32_MAX)
    assert guard.last_seq == U32_MAX
    assert not guard.is_fresh(U32_MAX)


def test_replay_guard_resumes_from_last_seq() -> None:
    guard = ReplayGuard(last_seq=100)
    assert not guard.is_fresh(100)
    assert guard.is_fresh(101)
    with pytest.raises(LocalProtocolError):
        ReplayGuard(last_seq=-1)


@pytest.mark.parametrize("openssl", [True, False], ids=["openssl-state", "hmac-fallback"])
def test_keyed_state_gives_hmac_digests_on_both_paths(monkeypatch, openssl: bool) -> None:
    """The OpenSSL keyed state and the fallback for Pythons without it sign identically."""
    from astranet.net import signing

    if not openssl:
        monkeypatch.setattr(signing, "_openssl_hmac_new", None)
    elif signing._openssl_hmac_new is None:
        pytest.skip("this Python has no _hashlib.hmac_new")
    key = bytes(range(32))
    state = signing._keyed_sha256(key)
    for message in (b"", b"x", b"seq+tick+blob" * 9):
        copy = state.copy()
        copy.update(message)
        assert copy.digest() == hmac.new(key, message, hashlib.sha256).digest()
