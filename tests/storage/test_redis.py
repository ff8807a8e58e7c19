"""RedisStorage specifics on a real redis-server: fencing by epoch, refusal, expiry, secrets.

The shared contract (upserts, ordering, checkpoints...) is in test_contract.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import redis

from astranet.errors import StorageError
from astranet.storage.base import Checkpoint, FencedOut, PlayerRecord, RoomRecord
from astranet.storage.base import hash_resume_token as token_hash
from astranet.storage.redis import CLOSED_ROOM_TTL_S, Fence, RedisStorage
from astranet.tools.redisproc import RedisProcess, free_port

pytestmark = pytest.mark.timeout(30)


def _room(room_id: str = "Room0001") -> RoomRecord:
    return RoomRecord(room_id, "us-east", "coop", 4, 100.0)


def _checkpoint(tick: int, room_id: str = "Room0001") -> Checkpoint:
    return Checkpoint(room_id, tick, float(tick), {"x": np.full(4, tick, "<i8")})


@pytest.fixture
def raw(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _node(url: str, node_id: str) -> RedisStorage:
    return RedisStorage(url, fence=Fence(node_id))


def test_an_unreachable_server_is_a_storage_error_naming_the_url() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(StorageError, match=f"{url}: connect failed"):
        RedisStorage(url)


def test_creating_a_room_claims_it_at_epoch_1(redis_url: str, raw: redis.Redis) -> None:
    node = _node(redis_url, "node-a")
    node.save_room(_room())
    assert node.fence is not None and node.fence.epoch_of("Room0001") == 1
    assert raw.hgetall("astranet:store:room:Room0001:owner") == {b"node": b"node-a", b"epoch": b"1"}
    node.save_checkpoint(_checkpoint(5))
    node.close()


def test_a_stale_epoch_writes_nothing(redis_url: str, raw: redis.Redis) -> None:
    old = _node(redis_url, "node-a")
    old.save_room(_room())
    old.save_player(PlayerRecord("p1", "Room0001", 3, token_hash(b"t"), 1.0))
    old.save_checkpoint(_checkpoint(10))
    # Another node takes the room over (what astranet.cluster.ownership's claim does).
    raw.hset("astranet:store:room:Room0001:owner", mapping={"node": "node-b", "epoch": 2})
    before = {key: raw.dump(key) for key in raw.keys("*")}

    with pytest.raises(FencedOut, match="owned by node node-b at epoch 2") as info:
        old.save_checkpoint(_checkpoint(20))
    assert info.value.room_id == "Room0001"
    with pytest.raises(FencedOut):
        old.save_player(PlayerRecord("p2", "Room0001", 4, token_hash(b"u"), 2.0))
    with pytest.raises(FencedOut):
        old.player_left("p1", 3.0)
    with pytest.raises(FencedOut):
        old.close_room("Room0001", 4.0)
    old.update_last_input_seq({"p1": 99})  # skipped, not raised: a batch spans rooms
    assert old.fenced_writes == 5
    assert {key: raw.dump(key) for key in raw.keys("*")} == before
    old.close()


def test_closing_a_room_is_written_then_releases_it(redis_url: str, raw: redis.Redis) -> None:
    node = _node(redis_url, "node-a")
    node.save_room(_room())
    node.close_room("Room0001", 9.0)  # written while still held...
    assert raw.hget("astranet:store:room:Room0001", "closed_at") == b"9.0"
    assert node.fence is not None and node.fence.epoch_of("Room0001") is None  # ...then let go
    with pytest.raises(FencedOut):
        node.save_checkpoint(_checkpoint(1))
    node.close()


def test_a_room_this_node_never_held_is_refused_locally(redis_url: str) -> None:
    creator = RedisStorage(redis_url)
    creator.save_room(_room())
    stranger = _node(redis_url, "node-c")
    with pytest.raises(FencedOut, match="not held by node node-c"):
        stranger.save_checkpoint(_checkpoint(1))
    creator.close()
    stranger.close()


def test_another_nodes_room_id_cannot_be_created_again(redis_url: str) -> None:
    first, second = _node(redis_url, "node-a"), _node(redis_url, "node-b")
    first.save_room(_room())
    with pytest.raises(FencedOut, match="owned by node node-a"):
        second.save_room(_room())
    first.close()
    second.close()


def test_a_closed_room_expires_with_its_players_and_checkpoint(
    redis_url: str, raw: redis.Redis
) -> None:
    store = RedisStorage(redis_url)
    store.save_room(_room())
    store.save_player(PlayerRecord("p1", "Room0001", 3, token_hash(b"t"), 1.0))
    store.save_checkpoint(_checkpoint(1))
    store.close_room("Room0001", 9.0)
    assert store._player_rooms == {}  # the per-player cache does not outlive the room
    for key in ("room:Room0001", "player:p1", "checkpoint:Room0001", "room:Room0001:players"):
        assert 0 < raw.ttl(f"astranet:store:{key}") <= CLOSED_ROOM_TTL_S, key
    store.close()


def test_resume_tokens_are_never_stored(redis_url: str, raw: redis.Redis) -> None:
    token = bytes(range(32))
    store = RedisStorage(redis_url)
    store.save_room(_room())
    store.save_player(PlayerRecord("p1", "Room0001", 3, token_hash(token), 1.0))
    hashes = [key for key in raw.keys("*") if raw.type(key) == b"hash"]
    values = b"".join(v for key in hashes for v in raw.hgetall(key).values())
    values += b"".join(raw.dump(key) or b"" for key in raw.keys("*"))
    assert token not in values and token_hash(token) in values
    store.close()


def test_a_corrupt_checkpoint_is_a_storage_error_naming_the_room(
    redis_url: str, raw: redis.Redis
) -> None:
    store = RedisStorage(redis_url)
    store.save_room(_room())
    store.save_checkpoint(_checkpoint(5))
    blob = raw.hget("astranet:store:checkpoint:Room0001", "blob")
    assert blob is not None
    raw.hset("astranet:store:checkpoint:Room0001", "blob", blob[:30])
    with pytest.raises(StorageError, match="Room0001"):
        store.load_checkpoint("Room0001")
    store.close()


def test_a_redis_that_goes_away_gives_storage_errors() -> None:
    server = RedisProcess()  # its own server (started): this test stops it
    try:
        store = RedisStorage(server.url)
        store.save_room(_room())
    finally:
        server.stop()
    with pytest.raises(StorageError, match=f"{server.url}: save_checkpoint failed"):
        store.save_checkpoint(_checkpoint(1))
    store.close()
