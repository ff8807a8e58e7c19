"""SnapshotReplicationSystem: one capture per tick, a payload per subscriber, deltas on ack."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from astranet.ecs import ColumnStore
from astranet.examples.dots import Dots
from astranet.game import SimContext
from astranet.replication import (
    ClientBaseline,
    EncodedSnapshot,
    Replica,
    SnapshotFanout,
    SnapshotHistory,
)
from astranet.systems import SnapshotReplicationSystem


@dataclass(eq=False)
class Subscriber:
    baseline: ClientBaseline = field(default_factory=ClientBaseline)
    visible: np.ndarray | None = None
    got: list[EncodedSnapshot] = field(default_factory=list)

    def deliver(self, snapshot: EncodedSnapshot) -> None:
        self.got.append(snapshot)


def test_every_subscriber_gets_a_decodable_snapshot_and_ackers_get_deltas() -> None:
    game = Dots()
    store = ColumnStore(game.schema)
    store.spawn(5, Body__pos=np.zeros((5, 2)), Body__kind=1)
    history = SnapshotHistory(store)
    system = SnapshotReplicationSystem(
        history, SnapshotFanout(game.schema, history), lambda: subscribers
    )
    lazy, acking = Subscriber(), Subscriber()
    subscribers = [lazy, acking]
    replicas = {id(lazy): Replica(game.schema), id(acking): Replica(game.schema)}
    for tick in range(1, 6):
        store["Body.pos"][:, 0] += 1.0
        system.process(SimContext(store, tick=tick))
        for sub in subscribers:
            sent = sub.got[-1]
            replicas[id(sub)].apply(
                sent.id, sent.base_id, sent.payload, sent.compressed, sent.server_tick
            )
        acking.baseline.ack(acking.got[-1].id)
    assert all(s.base_id is None for s in lazy.got)
    assert any(s.base_id is not None for s in acking.got[1:])
    assert [s.server_tick for s in lazy.got] == [1, 2, 3, 4, 5]
    for replica in replicas.values():
        assert np.allclose(replica.store["Body.pos"][:, 0], 5.0)
    assert system.payload_bytes == sum(len(s.payload) for s in lazy.got + acking.got)
