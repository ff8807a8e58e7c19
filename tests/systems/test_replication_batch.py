"""ReplicationBatch: rooms that step together get exactly the payloads each would encode alone."""

from __future__ import annotations

from astranet.examples.cubes import Cubes, encode_input
from astranet.replication import EncodedSnapshot, Replica, encode_payload, fanout
from astranet.replication.rooms_codec import encode_same_rows
from astranet.server.room import Player, Room
from astranet.systems.snapshot_replication import ReplicationBatch


class Sink:
    """A connected client: decodes what it gets; acks it ``lag`` snapshots later."""

    def __init__(self, room: Room, player: Player, lag: int) -> None:
        self.room, self.player, self.lag = room, player, lag
        self.got: list[EncodedSnapshot] = []
        self.replica = Replica(room.game.schema)

    def offer_snapshot(self, snapshot: EncodedSnapshot, last_input_seq: int | None) -> None:
        self.got.append(snapshot)
        schema, history = self.room.game.schema, self.room.history
        base = history.get(snapshot.base_id)
        assert (snapshot.base_id is None) == (base is None)
        payload, compressed = encode_payload(
            schema, history.get(snapshot.id), base, checksum=self.room.fanout.checksum
        )
        assert (snapshot.payload, snapshot.compressed) == (payload, compressed)
        update = self.replica.apply(
            snapshot.id,
            snapshot.base_id,
            snapshot.payload,
            snapshot.compressed,
            snapshot.server_tick,
        )
        assert update.snapshot.same_state(history.get(snapshot.id))

    def ack(self) -> None:
        if len(self.got) > self.lag:
            self.player.baseline.ack(self.got[-1 - self.lag].id)


def _rooms(count: int, *, checksum_every: int = 0) -> tuple[list[Room], list[Sink]]:
    game = Cubes(60, 0.2)
    rooms, sinks = [], []
    for r in range(count):
        checksum = bool(checksum_every) and r % checksum_every == 0
        room = Room(f"RB{r:03d}", "test", "cubes", game, checksum=checksum)
        for i in range(3):
            player = room.add_player(f"r{r}p{i}", b"")
            sink = Sink(room, player, lag=i % 3)  # acks 0, 1, 2 snapshots behind
            player.session = sink
            sinks.append(sink)
        rooms.append(room)
    return rooms, sinks


def test_batched_rooms_deliver_the_payloads_each_room_would_encode(monkeypatch) -> None:
    batched: list[bytes | None] = []

    def counting(*args, **kwargs):
        out = encode_same_rows(*args, **kwargs)
        batched.extend(out)
        return out

    monkeypatch.setattr(fanout, "encode_same_rows", counting)
    rooms, sinks = _rooms(9, checksum_every=9)  # room 0 checksums: the one-by-one path
    batch = ReplicationBatch(max_rooms=4, max_wait_s=1.0)
    try:
        for tick in range(1, 30):
            for sink in sinks:
                sink.ack()
                sink.player.inputs.push(tick, encode_input(1.0, 0.5))
            if tick == 10:  # a structural change: spawns go the one-by-one way
                rooms[1].add_player("late", b"")
            if tick == 15:  # a resync: the next snapshot is full
                sinks[4].player.baseline.reset()
            for room in rooms:
                room.step(tick, batch)
                if batch.due():
                    batch.flush()
            batch.flush()
        assert all(len(sink.got) == 29 for sink in sinks)
        assert sinks[4].got[14].base_id is None  # tick 15: after the reset
        assert sum(s.base_id is not None for sink in sinks for s in sink.got) > 500
        assert sum(raw is not None for raw in batched) > 80  # rooms 4-7 went the batched way
    finally:
        for room in rooms:
            room.close()


def test_nothing_is_delivered_before_the_flush_and_a_discarded_room_gets_nothing() -> None:
    rooms, sinks = _rooms(3)
    batch = ReplicationBatch(max_rooms=16, max_wait_s=1.0)
    try:
        for room in rooms:
            room.step(1, batch)
        assert not batch.due() and len(batch) == 3
        assert all(not sink.got for sink in sinks)
        batch.discard(rooms[0].replication)
        batch.flush()
        assert [len(sink.got) for sink in sinks] == [0] * 3 + [1] * 6
        rooms[0].step(2)  # without a batch: delivered before step returns
        assert [len(sink.got) for sink in sinks[:3]] == [1, 1, 1]
        assert all(s.got[0].base_id is None for s in sinks)
    finally:
        for room in rooms:
            room.close()


def test_a_chunk_is_due_by_room_count_or_by_time() -> None:
    now = [0.0]
    batch = ReplicationBatch(max_rooms=2, max_wait_s=0.002, clock=lambda: now[0])
    rooms, _ = _rooms(3)
    try:
        rooms[0].step(1, batch)
        assert not batch.due()
        now[0] = 0.003
        assert batch.due()
        rooms[1].step(1, batch)
        batch.flush()
        assert not batch.due() and len(batch) == 0
        rooms[0].step(2, batch)
        rooms[2].step(1, batch)
        assert batch.due()  # two rooms
        batch.flush()
    finally:
        for room in rooms:
            room.close()


def test_interest_rooms_in_a_batch_decode_what_the_server_recorded() -> None:
    from astranet.examples.dots import encode_input as dots_input
    from tests.server.test_room_interest import Collector, NearbyDots

    game = NearbyDots()
    rooms = [Room(f"RBI{r}", "test", "dots", game) for r in range(2)]
    plain, _ = _rooms(4)
    batch = ReplicationBatch(max_rooms=16, max_wait_s=1.0)
    try:
        seats = []
        for room in rooms:
            for k in range(2):
                player = room.add_player(f"p{k}", b"h")
                player.session = Collector()
                seats.append((player, player.session, Replica(game.schema)))
        for tick in range(1, 40):
            for n, (player, _, _) in enumerate(seats):
                player.inputs.push(tick, dots_input(1.0 if n % 2 else -1.0, 0.3))
            for room in [*rooms, *plain]:
                room.step(tick, batch)
            assert all(len(sink.snapshots) == tick - 1 for _, sink, _ in seats)  # not yet
            batch.flush()
            for player, sink, replica in seats:
                out = sink.snapshots[-1]
                replica.apply(out.id, out.base_id, out.payload, out.compressed, out.server_tick)
                assert replica.latest.same_state(player.baseline.sent(out.id))
                player.baseline.ack(out.id)
    finally:
        for room in [*rooms, *plain]:
            room.close()


class RaisingSink(Sink):
    def offer_snapshot(self, snapshot: EncodedSnapshot, last_input_seq: int | None) -> None:
        raise RuntimeError("a broken sink")


def test_a_raising_delivery_fails_only_its_room() -> None:
    rooms, sinks = _rooms(3)
    broken = rooms[1].players["r1p0"]
    broken.session = RaisingSink(rooms[1], broken, 0)
    batch = ReplicationBatch(max_rooms=16, max_wait_s=1.0)
    try:
        for room in rooms:
            room.step(1, batch)
        assert batch.flush() == [rooms[1].replication]
        assert [len(sink.got) for sink in sinks[:3] + sinks[6:]] == [1] * 6
    finally:
        for room in rooms:
            room.close()


def test_a_raising_batched_pass_falls_back_to_room_by_room(monkeypatch, caplog) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("a codec bug")

    rooms, sinks = _rooms(5)
    batch = ReplicationBatch(max_rooms=16, max_wait_s=1.0)
    try:
        for tick in (1, 2, 3):
            for sink in sinks:
                sink.ack()
            if tick == 3:
                monkeypatch.setattr(fanout, "encode_same_rows", broken)
            for room in rooms:
                room.step(tick, batch)
            assert batch.flush() == []
        assert all(len(sink.got) == 3 for sink in sinks)  # Sink checks every payload's bytes
        assert "batched snapshot encode raised" in caplog.text
    finally:
        for room in rooms:
            room.close()
