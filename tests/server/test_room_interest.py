"""A room whose game manages interest: each player's snapshots carry what it may see, within
the game's byte budget, and decode into exactly the composite the server recorded."""

from __future__ import annotations

import numpy as np

from astranet.examples.dots import Dots, encode_input
from astranet.replication import Replica
from astranet.replication.fanout import EncodedSnapshot
from astranet.replication.interest import ENVELOPE_BYTES, InterestBaseline, Relevance, SpatialGrid
from astranet.server.room import Room

RADIUS = 8.0


class NearbyDots(Dots):
    """Dots where a player sees only what is within RADIUS of it, under 6 kB/s."""

    snapshot_budget_bytes_per_s = 6000

    def relevance(self, sim, net_id: int) -> Relevance:  # type: ignore[no-untyped-def]
        store = sim.store
        grid = SpatialGrid(store["Body.pos"], cell_size=RADIUS)
        me = store["Body.pos"][store.rows([net_id])][0]
        return grid.relevance(me, RADIUS, near_radius=2.0)


class Collector:
    def __init__(self) -> None:
        self.snapshots: list[EncodedSnapshot] = []

    def offer_snapshot(self, snapshot: EncodedSnapshot, last_input_seq: int | None) -> None:
        self.snapshots.append(snapshot)


def test_each_player_gets_its_surroundings_within_budget() -> None:
    game = NearbyDots()
    room = Room("INTEREST", "us-east", "dots", game)
    players = [room.add_player(f"p{k}", b"h") for k in range(2)]
    sinks = [Collector() for _ in players]
    replicas = [Replica(game.schema) for _ in players]
    for player, sink in zip(players, sinks, strict=True):
        player.session = sink
        assert isinstance(player.baseline, InterestBaseline)
    budget = 6000 // room.tick_hz - ENVELOPE_BYTES
    for tick in range(90):
        for seq, player in enumerate(players):
            player.inputs.push(tick * 2 + seq + 1, encode_input(1.0 if seq else -1.0, 0.3))
        room.step(tick)
        for player, sink, replica in zip(players, sinks, replicas, strict=True):
            out = sink.snapshots[-1]
            assert out.id == room.history.latest.id
            assert len(out.payload) <= budget
            replica.apply(out.id, out.base_id, out.payload, out.compressed, out.server_tick)
            assert replica.latest.same_state(player.baseline.sent(out.id))
            player.baseline.ack(out.id)
    # The players walked apart: each sees its own avatar and not the other's.
    for me, other, replica in (
        (players[0], players[1], replicas[0]),
        (players[1], players[0], replicas[1]),
    ):
        held = replica.latest.net_ids
        assert me.net_id in held and other.net_id not in held
        pos = room.store["Body.pos"][room.store.rows(held)]
        mine = room.store["Body.pos"][room.store.rows([me.net_id])][0]
        assert (np.hypot(*(pos - mine).T) <= RADIUS + 1.0).all()  # no ghosts from far away
