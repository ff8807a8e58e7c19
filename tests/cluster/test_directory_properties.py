"""Property: whatever mix of requests three nodes send, no room is ever overfilled.

Hypothesis draws sequences of directory operations (FindOrCreate with party sizes 1-4,
JoinRoom with and without the party token, claims of redirect seat tokens, releases), runs
them in concurrent batches against a real redis-server, and after every batch checks every
room: seated players + live holds <= capacity, and the directory's player count equals the
seats the operations granted.
"""

from __future__ import annotations

import asyncio
import secrets
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astranet.cluster import RoomDirectory
from astranet.errors import MatchmakingError
from tests.cluster.conftest import FAST_TIMINGS

NODES = ("n0", "n1", "n2")
operation = st.one_of(
    st.tuples(st.just("find"), st.sampled_from(NODES), st.integers(1, 4)),
    st.tuples(st.just("join"), st.sampled_from(NODES), st.booleans()),
    st.tuples(st.just("claim"), st.sampled_from(NODES), st.just(0)),
    st.tuples(st.just("release"), st.sampled_from(NODES), st.just(0)),
)
batches = st.lists(st.lists(operation, min_size=1, max_size=6), min_size=1, max_size=5)


async def _check(directory: RoomDirectory) -> None:
    now_ms = int(time.time() * 1000)
    for room in await directory.rooms():
        key = f"{directory.namespace}:holds:{room['room_id']}"
        holds = await directory.client.zcount(key, f"({now_ms}", "+inf")
        assert room["players"] + holds <= room["capacity"], (room, holds)
        assert room["players"] >= 0


async def _run(redis_url: str, plan: list[list[tuple[str, str, object]]]) -> None:
    namespace = "p" + secrets.token_hex(4)
    nodes = {
        name: await RoomDirectory.connect(
            redis_url, name, f"ws://{name}.invalid", ["us-east"],
            namespace=namespace, timings=FAST_TIMINGS,
        )
        for name in NODES
    }  # fmt: skip
    seated: list[tuple[str, str]] = []  # (room_id, owner) seats granted as players
    parties: list[tuple[str, bytes]] = []
    tokens: list[tuple[str, bytes]] = []
    try:
        for directory in nodes.values():
            await directory.heartbeat(0, 0, [])

        async def apply(op: tuple[str, str, object]) -> None:
            kind, node, arg = op
            directory = nodes[node]
            try:
                if kind == "find":
                    placement = await directory.find_or_create("us-east", "m", int(arg))  # type: ignore[arg-type]
                    if placement.party_token:
                        parties.append((placement.room_id, placement.party_token))
                elif kind == "join" and arg and parties:
                    room_id, party = parties[-1]
                    placement = await directory.join_room(room_id, party)
                elif kind == "join" and seated:
                    placement = await directory.join_room(seated[-1][0])
                elif kind == "claim" and tokens:
                    room_id, token = tokens.pop()
                    placement = await directory.claim_seat(room_id, token)
                elif kind == "release" and seated:
                    room_id, owner = seated.pop()
                    await nodes[owner].release(room_id)
                    return
                else:
                    return
            except MatchmakingError:
                return
            if placement.local:
                seated.append((placement.room_id, placement.node))
            elif placement.seat_token:
                tokens.append((placement.room_id, placement.seat_token))

        for batch in plan:
            await asyncio.gather(*(apply(op) for op in batch))
            await _check(nodes["n0"])
        players = {r["room_id"]: r["players"] for r in await nodes["n0"].rooms()}
        granted: dict[str, int] = {}
        for room_id, _ in seated:
            granted[room_id] = granted.get(room_id, 0) + 1
        assert {k: v for k, v in players.items() if v} == granted
    finally:
        for directory in nodes.values():
            await directory.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(plan=batches)
def test_no_mix_of_concurrent_requests_overfills_a_room(redis_url: str, plan) -> None:
    asyncio.run(_run(redis_url, plan))
