"""esper glue: link esper entities to replicated rows by net id.

Replicated state lives in :class:`~astranet.ecs.store.ColumnStore` columns; an esper entity that
replicates carries one small :class:`NetEntity` tag naming its net id. Structural work (spawn,
despawn) is per entity and happens here, in Python, which is fine: it is rare compared with the
per-tick math, which systems do on whole columns.

Server: :func:`spawn_networked` / :func:`despawn_networked` create or delete esper entities and
their rows together. Client: :class:`EntityMirror` follows the spawns and despawns a replica
reports, creating and deleting esper entities in the current world.
All functions act on esper's *current* world (call ``esper.switch_world(room_id)`` first, or
enter a :class:`WorldSwitch`, which switches back on exit).
Limits: none beyond the store's; the mirror's map holds one entry per live replicated entity.
Benchmark: structural only, not on the hot path (benchmarks/tick.py covers the per-tick part).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import esper
import numpy as np

from astranet.ecs.store import ColumnStore

__all__ = ["EntityMirror", "NetEntity", "WorldSwitch", "despawn_networked", "spawn_networked"]

ComponentFactory = Callable[[int], Iterable[Any]]


class WorldSwitch:
    """Context manager: make ``world`` esper's current world, and the previous one on exit.

    Synchronous only (never await inside: esper's current world is process-global). A small
    slotted class rather than ``contextlib.contextmanager``: rooms enter it every tick.
    """

    __slots__ = ("_previous", "_world")

    def __init__(self, world: str) -> None:
        self._world = world
        self._previous = "default"

    def __enter__(self) -> None:
        self._previous = esper.current_world
        esper.switch_world(self._world)

    def __exit__(self, *exc: object) -> None:
        esper.switch_world(self._previous)


@dataclass(slots=True)
class NetEntity:
    """esper component: this entity's replicated row has net id ``net_id``."""

    net_id: int


def spawn_networked(
    store: ColumnStore,
    n: int = 1,
    *,
    components: ComponentFactory | None = None,
    **values: np.ndarray | float,
) -> tuple[list[int], np.ndarray]:
    """Spawn ``n`` rows (``values`` as in :meth:`ColumnStore.spawn`) and an esper entity for each,
    tagged :class:`NetEntity` plus whatever ``components(net_id)`` returns. Returns
    ``(entities, net_ids)``."""
    net_ids = store.spawn(n, **values)
    entities = [
        esper.create_entity(NetEntity(net_id), *(components(net_id) if components else ()))
        for net_id in net_ids.tolist()
    ]
    return entities, net_ids


def despawn_networked(store: ColumnStore, entities: Iterable[int]) -> None:
    """Delete esper ``entities`` and despawn their rows (the next snapshot replicates it)."""
    entities = list(entities)
    store.despawn([esper.component_for_entity(e, NetEntity).net_id for e in entities])
    for entity in entities:
        esper.delete_entity(entity, immediate=True)


class EntityMirror:
    """Client side: one esper entity per replicated net id, following a replica's changes."""

    def __init__(self, components: ComponentFactory | None = None) -> None:
        self.components = components
        self.entity_of: dict[int, int] = {}

    def sync(self, spawned: np.ndarray, despawned: np.ndarray) -> None:
        """Delete entities of ``despawned`` net ids, create tagged ones for ``spawned``."""
        for net_id in despawned.tolist():
            entity = self.entity_of.pop(net_id, None)
            if entity is not None and esper.entity_exists(entity):
                esper.delete_entity(entity, immediate=True)
        for net_id in spawned.tolist():
            extra = self.components(net_id) if self.components else ()
            self.entity_of[net_id] = esper.create_entity(NetEntity(net_id), *extra)
