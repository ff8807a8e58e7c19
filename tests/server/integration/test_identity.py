"""WIRE A4 over real sockets: JWT authentication, one seat per sub, final kicks, rotating resume
tokens, per-peer bounds, the lobby idle timeout and the seq window."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from websockets.asyncio.client import connect

from astranet.examples.dots import encode_input
from astranet.net.limits import U32_MAX
from astranet.net.messages import (
    ErrorMessage,
    FindOrCreate,
    Hello,
    HelloAck,
    JoinAccepted,
    MatchResult,
    Resume,
)
from astranet.server.auth import player_id_for_subject
from astranet.server.session import TAKEOVER_REASON

from .conftest import Running, StartServer, WireClient, metric_value

pytestmark = pytest.mark.timeout(30)

SECRET = "s" * 40


def token(sub: str = "alice", *, exp_in_s: float = 600, key: str = SECRET, **claims) -> str:
    payload = {"sub": sub, "exp": int(time.time() + exp_in_s), **claims}
    return jwt.encode(payload, key, algorithm="HS256")


async def authed(running: Running, tok: str | None, *, url_token: str | None = None) -> WireClient:
    url = running.url + (f"/?token={url_token}" if url_token else "")
    client = await WireClient.open(url)
    await client.send(Hello(1, token=tok))
    return client


async def join_as(running: Running, sub: str, **kwargs) -> WireClient:
    client = await authed(running, token(sub))
    await client.expect(HelloAck)
    await client.send(FindOrCreate(kwargs.get("region", "us-east"), "coop", 1))
    await client.expect(MatchResult)
    client.joined = await client.expect(JoinAccepted)
    return client


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "",
        "not.a.jwt",
        token(exp_in_s=-5),
        token(key="w" * 40),
        jwt.encode({"sub": "x"}, SECRET, algorithm="HS256"),  # no exp
        jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),  # no sub
        jwt.encode({"sub": "x", "exp": 2**40}, SECRET * 2, algorithm="HS512"),  # other alg
    ],
    ids=["missing", "empty", "malformed", "expired", "wrong_key", "no_exp", "no_sub", "hs512"],
)
async def test_bad_tokens_are_unauthorized_then_1008(serve: StartServer, bad: str | None) -> None:
    running = await serve("--auth-jwt-secret", SECRET)
    client = await authed(running, bad)
    error = await client.expect(ErrorMessage)
    assert error.code == "unauthorized"
    code, _ = await client.closed()
    assert code == 1008


async def test_same_sub_same_player_id_token_in_hello_or_url(serve: StartServer) -> None:
    running = await serve("--auth-jwt-secret", SECRET)
    a = await join_as(running, "alice")
    assert a.joined.player_id == player_id_for_subject("alice")  # type: ignore[union-attr]
    b = await authed(running, None, url_token=token("bob"))  # the browser way
    await b.expect(HelloAck)
    await b.send(FindOrCreate("us-west", "coop", 1))
    await b.expect(MatchResult)
    assert (await b.expect(JoinAccepted)).player_id == player_id_for_subject("bob")


async def test_second_session_of_a_sub_takes_the_seat_over(serve: StartServer) -> None:
    running = await serve("--auth-jwt-secret", SECRET)
    first = await join_as(running, "alice")
    second = await join_as(running, "alice")
    old, new = first.joined, second.joined
    assert old is not None and new is not None
    assert (new.room_id, new.player_id, new.entity) == (old.room_id, old.player_id, old.entity)
    assert await first.closed() == (1008, TAKEOVER_REASON)
    assert (await running.rooms())[0]["players"] == 1  # one seat, not two
    # Joining another region moves the one seat: the old room loses it.
    third = await join_as(running, "alice", region="eu-central")
    assert third.joined.room_id != old.room_id  # type: ignore[union-attr]
    assert await second.closed() == (1008, TAKEOVER_REASON)
    players = {r["room_id"]: r["players"] for r in await running.rooms()}
    assert players.get(old.room_id, 0) == 0 and players[third.joined.room_id] == 1  # type: ignore[union-attr]


async def test_an_es256_public_key_from_a_file(serve: StartServer, tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "key.pem").write_bytes(pem)
    running = await serve("--auth-jwt-public-key", str(tmp_path / "key.pem"))
    good = jwt.encode({"sub": "e", "exp": int(time.time()) + 60}, private, algorithm="ES256")
    client = await authed(running, good)
    await client.expect(HelloAck)
    forged = _hs256_by_hand({"sub": "e", "exp": int(time.time()) + 60}, pem)
    refused = await authed(running, forged)  # alg confusion: HS256 keyed with the public PEM
    assert (await refused.expect(ErrorMessage)).code == "unauthorized"


def _hs256_by_hand(claims: dict[str, object], key: bytes) -> str:
    """What an attacker builds (PyJWT refuses to HMAC with a PEM key, we must too)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(mac)


async def test_anonymous_by_default_ignores_tokens(running: Running) -> None:
    client = await authed(running, "garbage")
    await client.expect(HelloAck)


async def test_a_kick_is_final_resume_is_denied_and_the_seat_is_free(running: Running) -> None:
    victim = await running.joined_client()
    joined = victim.joined
    assert joined is not None
    frame = victim.input_frame(encode_input(1, 0))
    await victim.send(frame)
    await victim.send(frame)  # replayed: closed 1008 under the default policy
    assert (await victim.closed())[0] == 1008
    await running.ended(victim)
    assert (await running.rooms())[0]["players"] == 0  # seat freed at once
    again = await running.client()
    await again.hello()
    await again.send(Resume(joined.room_id, joined.player_id, joined.resume_token))
    assert (await again.expect(ErrorMessage)).code == "resume_denied"


async def test_resume_tokens_rotate_and_the_old_one_dies_once_the_new_is_proven(
    running: Running,
) -> None:
    first = await running.joined_client()
    old = first.joined
    assert old is not None
    first.ws.transport.abort()
    await running.ended(first)

    async def resume(tok: bytes) -> WireClient:
        client = await running.client()
        await client.hello()
        await client.send(Resume(old.room_id, old.player_id, tok))
        return client

    second = await resume(old.resume_token)
    rotated = await second.expect(JoinAccepted)
    assert rotated.resume_token != old.resume_token
    second.ws.transport.abort()  # as if the JoinAccepted had been lost: the old one still works
    await running.ended(second)
    third = await resume(old.resume_token)
    third.joined = await third.expect(JoinAccepted)
    await third.send_input(encode_input(1, 0), seq=1)  # proves the new token arrived
    await third.snapshot_where(lambda s: s.last_input_seq == 1)
    third.ws.transport.abort()
    await running.ended(third)
    stale = await resume(old.resume_token)
    assert (await stale.expect(ErrorMessage)).code == "resume_denied"
    fresh = await resume(third.joined.resume_token)
    assert (await fresh.expect(JoinAccepted)).player_id == old.player_id


async def test_seq_at_u32_max_is_refused_and_the_seat_keeps_playing(running: Running) -> None:
    client = await running.joined_client()
    await client.send_input(encode_input(1, 0), seq=U32_MAX)
    assert (await client.expect(ErrorMessage)).code == "bad_request"
    await client.send_input(encode_input(1, 0), seq=7)
    snapshot = await client.snapshot_where(lambda s: s.last_input_seq == 7)
    assert snapshot.last_input_seq == 7


async def test_connections_per_peer_over_the_bound_close_1013(serve: StartServer) -> None:
    running = await serve("--max-connections-per-peer", "3")
    held = [await running.client() for _ in range(3)]
    for client in held:
        await client.hello()
    async with connect(running.url) as extra:
        await extra.wait_closed()
        assert extra.close_code == 1013
    await held[0].close()
    await running.ended(held[0])
    again = await running.client()  # a slot is free again
    await again.hello()


async def test_rooms_per_peer_over_the_bound_are_busy(serve: StartServer) -> None:
    running = await serve("--max-rooms-per-peer", "2")
    for mode in ("a", "b"):
        await running.joined_client(game_mode=mode)
    client = await running.client()
    await client.hello()
    await client.send(FindOrCreate("us-east", "c", 1))
    assert (await client.expect(ErrorMessage)).code == "busy"
    await client.send(FindOrCreate("us-east", "a", 1))  # joining an existing room is fine
    await client.expect(MatchResult)
    assert len(await running.rooms()) == 2
    metrics = await running.metrics()
    assert metric_value(metrics, "astranet_rooms") == 2


async def test_lobby_idlers_are_closed(serve: StartServer) -> None:
    running = await serve("--lobby-idle-timeout", "0.5")
    idle = await running.client()
    await idle.hello()
    code, reason = await idle.closed(within_s=5)
    assert (code, reason) == (1008, "lobby idle timeout: no room requested")


async def test_abandoned_rooms_are_not_stepped(running: Running) -> None:
    """Room amplification (issue 16 #1): rooms whose only player dropped (held seat, held party
    seats) cost no simulation; the bystander's room keeps ticking."""
    dropped = []
    for index in range(5):
        client = await running.joined_client(game_mode=f"amp{index}", party_size=4)
        dropped.append(client.joined.room_id)  # type: ignore[union-attr]
        client.ws.transport.abort()
        await running.ended(client)
    bystander = await running.joined_client(region="eu-central", game_mode="bystander")
    rooms = running.server.rooms
    frozen = {room_id: rooms[room_id].tick for room_id in dropped}
    own = rooms[bystander.joined.room_id]  # type: ignore[union-attr]
    start = own.tick
    await bystander.snapshot_where(lambda s: s.server_tick >= start + 10)
    assert own.tick >= start + 10
    assert {room_id: rooms[room_id].tick for room_id in dropped} == frozen


async def test_an_oversized_snapshot_is_logged_once_counted_and_frees_the_seat(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 16 #9: the room's state outgrew a message. Two clients of the room hit it on the
    same tick: one log line for the room, each client closed 1011, both seats freed."""
    from astranet.errors import LocalProtocolError

    first = await running.joined_client(party_size=1)
    second = await running.joined_client(party_size=1)
    assert first.joined.room_id == second.joined.room_id  # type: ignore[union-attr]
    sessions = [s for s in running.server.sessions if s.player is not None]
    assert len(sessions) == 2
    too_big = LocalProtocolError("payload of 70000 bytes exceeds 65408")
    for _ in range(3):  # three ticks in a row
        for session in sessions:
            running.server.note_oversized_snapshot(session, too_big)
    for client in (first, second):
        assert await client.closed() == (1011, "snapshot too large for a message")
    await running.ended(first, second)
    assert sum("does not fit in a message" in r.getMessage() for r in caplog.records) == 1
    metrics = await running.metrics()
    assert metric_value(metrics, "astranet_kicks_total", reason="snapshot_too_large") == 2
    assert (await running.rooms())[0]["players"] == 0


async def test_a_seat_that_cannot_be_held_leaves_no_ghost(running: Running) -> None:
    """Issue 16 #9: hold_for_resume refusing (InvalidState) used to leave a player with no
    session and no hold, keeping the room alive forever. Now the avatar goes."""
    client = await running.joined_client()
    joined = client.joined
    assert joined is not None
    # Seat accounting already holds this player (as a restored room could): the drop's own
    # hold_for_resume is then refused.
    running.server.matchmaker.hold_for_resume(joined.room_id, joined.player_id)
    client.ws.transport.abort()
    await running.ended(client)
    room = running.server.rooms[joined.room_id]
    assert joined.player_id not in room.players
