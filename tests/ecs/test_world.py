"""esper glue: entities tagged with NetEntity follow rows on server and client."""

import uuid
from collections.abc import Iterator

import esper
import numpy as np
import pytest

from astranet.ecs.schema import Quantized, Schema, replicated
from astranet.ecs.store import ColumnStore
from astranet.ecs.world import (
    EntityMirror,
    NetEntity,
    WorldSwitch,
    despawn_networked,
    spawn_networked,
)


@replicated
class Pos:
    x = Quantized(-10.0, 10.0, 0.5)


class Tag:
    pass


@pytest.fixture(autouse=True)
def fresh_world() -> Iterator[str]:
    name = uuid.uuid4().hex
    previous = esper.current_world
    esper.switch_world(name)
    yield name
    esper.switch_world(previous)
    esper.delete_world(name)


def test_spawn_and_despawn_networked_keep_esper_and_rows_together() -> None:
    store = ColumnStore(Schema(Pos))
    entities, ids = spawn_networked(store, 3, components=lambda nid: [Tag()], Pos__x=1.0)
    assert [esper.component_for_entity(e, NetEntity).net_id for e in entities] == ids.tolist()
    assert all(esper.has_component(e, Tag) for e in entities)
    despawn_networked(store, entities[:1])
    assert not esper.entity_exists(entities[0])
    assert store.net_ids.tolist() == ids[1:].tolist()


def test_mirror_creates_and_deletes_entities() -> None:
    mirror = EntityMirror(components=lambda nid: [Tag()])
    mirror.sync(np.array([4, 9], dtype=np.uint32), np.zeros(0, dtype=np.uint32))
    assert sorted(mirror.entity_of) == [4, 9]
    ent = mirror.entity_of[9]
    assert esper.component_for_entity(ent, NetEntity).net_id == 9
    mirror.sync(np.zeros(0, dtype=np.uint32), np.array([9], dtype=np.uint32))
    assert sorted(mirror.entity_of) == [4] and not esper.entity_exists(ent)
    assert len(esper.get_component(NetEntity)) == 1


def test_world_switch_enters_a_world_and_restores_the_previous_one(fresh_world: str) -> None:
    other = uuid.uuid4().hex
    try:
        with pytest.raises(RuntimeError), WorldSwitch(other):
            assert esper.current_world == other
            raise RuntimeError
        assert esper.current_world == fresh_world  # restored on an exception too
    finally:
        esper.delete_world(other)
