"""astranet.ecs: replicated component declarations, quantizers and the numpy column store.

Declare fields with :func:`replicated` classes, group them in a :class:`Schema`, keep the state
in a :class:`ColumnStore` that systems read and write as whole columns, and tag esper entities
with :class:`NetEntity`. See docs/replication.md.
"""

from astranet.ecs.schema import (
    MAX_FIELDS,
    Angle,
    Bool,
    Encoding,
    FieldSpec,
    Float,
    Quantized,
    Quaternion,
    Schema,
    SchemaError,
    replicated,
)
from astranet.ecs.store import (
    DEFAULT_QUARANTINE,
    MAX_ENTITIES,
    MAX_RECYCLABLE_IDS,
    ColumnStore,
    UnknownEntityError,
)
from astranet.ecs.world import (
    EntityMirror,
    NetEntity,
    WorldSwitch,
    despawn_networked,
    spawn_networked,
)

__all__ = [
    "DEFAULT_QUARANTINE",
    "MAX_ENTITIES",
    "MAX_FIELDS",
    "MAX_RECYCLABLE_IDS",
    "Angle",
    "Bool",
    "ColumnStore",
    "Encoding",
    "EntityMirror",
    "FieldSpec",
    "Float",
    "NetEntity",
    "Quantized",
    "Quaternion",
    "Schema",
    "SchemaError",
    "UnknownEntityError",
    "WorldSwitch",
    "despawn_networked",
    "replicated",
    "spawn_networked",
]
