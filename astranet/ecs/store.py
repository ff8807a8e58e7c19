"""The columnar store: one numpy array per replicated field, rows kept sorted by net id.

Why columns and not esper components: esper components are Python objects per entity, and
per-tick math over hundreds of entities must not be a Python loop (STYLE.md section 3). So the
replicated state lives here and game systems read and write the columns directly
(``store["Transform.pos"][moving] += vel * dt_s``); esper entities only carry a small
``NetEntity(net_id)`` tag (astranet.ecs.world) for identity. There is therefore no sync step at
all on the hot path: capture quantizes the columns as they are.

Slot table: live rows ``0..count-1`` are kept sorted by net id, so the net id -> row lookup is a
vectorised ``np.searchsorted`` and snapshots need no sort. Despawn compacts in order (one
boolean mask; one row by a slice shift); spawn appends fresh ids, which are larger than every
live one, and re-sorts only when ids are recycled (rare; they come in the order they were
freed). Row numbers change on structural changes: keep net ids, not rows, across ticks.

Net ids: u32, 0 is never used (it means "none"). Fresh ids come from a counter; a despawned id
sits in quarantine for ``quarantine`` captures (default twice the snapshot ring, so no snapshot
a client could use as a delta base still mentions it) and is only recycled after that. At most
MAX_RECYCLABLE_IDS despawned ids are remembered (forgetting one only means it is never reused).
Limits: MAX_ENTITIES live rows per store.
Benchmark: benchmarks/tick.py (server tick), benchmarks/test_bench_replication.py.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from astranet.ecs.schema import Schema
from astranet.errors import AstranetError, StorageError

__all__ = [
    "DEFAULT_QUARANTINE",
    "MAX_ENTITIES",
    "MAX_RECYCLABLE_IDS",
    "ColumnStore",
    "UnknownEntityError",
]

# 1M live replicated entities is ~100x what a 30 Hz room can simulate and send; the cap turns a
# runaway spawn loop into an error instead of an out-of-memory kill.
MAX_ENTITIES = 1 << 20
# Twice the default snapshot ring (64 snapshots ~ 2 s at 30 Hz), measured in captures.
DEFAULT_QUARANTINE = 128
# Despawned ids remembered for recycling once the 2**32 counter runs out (weeks of heavy
# spawning). Forgetting older ones is always safe: a forgotten id is simply never reused.
MAX_RECYCLABLE_IDS = 1 << 16
_MAX_NET_ID = (1 << 32) - 1
# Despawned ids kept in Python lists before they are folded into the freed-id arrays: a copy
# of at most MAX_RECYCLABLE_IDS entries every this many despawned ids, ~40 KB of lists at most.
_FREED_PENDING = 1024
_MAX_CACHED_ROWS = 64  # row() serves a room's few avatars; anything else just looks up again
_STATE_VERSION = 1


class UnknownEntityError(AstranetError, KeyError):
    """A net id that is not live in this store (or a spawn over the entity limit)."""


class ColumnStore:
    """Replicated columns for one room (server) or one client replica.

    Use ``store[name]`` (a writable view of the live rows) from systems, :meth:`spawn` and
    :meth:`despawn` for structure, :meth:`rows` to find rows of net ids.
    """

    def __init__(
        self, schema: Schema, *, capacity: int = 256, quarantine: int = DEFAULT_QUARANTINE
    ) -> None:
        self.schema = schema
        self.quarantine = quarantine
        self.count = 0
        self.clock = 0  # captures so far; the quarantine is measured in captures
        self._next_id = 1
        self._ids = np.zeros(max(1, capacity), dtype=np.uint32)
        self._columns = [
            np.zeros(f.encoding.column_shape(len(self._ids)), dtype=f.encoding.column_dtype)
            for f in schema.fields
        ]
        # Despawned ids (oldest first) and the clock each was freed at. Despawns only append
        # to the pending lists (concatenating onto arrays of up to MAX_RECYCLABLE_IDS ids
        # copied them whole on every despawn); _settle_freed() folds them into the arrays
        # when those are read, or every _FREED_PENDING ids (a bounded, amortised copy).
        self._freed_ids = np.zeros(0, dtype=np.uint32)
        self._freed_at = np.zeros(0, dtype=np.int64)
        self._freed_pending_ids: list[int] = []
        self._freed_pending_at: list[int] = []
        # name -> view over the live rows; systems index columns by name dozens of times a
        # tick, so each view is made once and dropped by every structural change.
        self._views: dict[str, np.ndarray] = {}
        # The same for net_ids and columns(), which every capture reads.
        self._ids_view: np.ndarray | None = None
        self._column_views: list[np.ndarray] | None = None
        # net id -> row of the ids row() was asked for (each player's, every input), until
        # the next structural change.
        self._row_of: dict[int, int] = {}
        #: Bumped by every structural change (spawn, despawn, replace_all): while it stays the
        #: same, every live row keeps its net id and its row number, so systems may cache rows.
        self.generation = 0

    # -- access ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, name: str) -> np.ndarray:
        """Writable view of column ``name`` over the live rows (invalid after spawn/despawn)."""
        view = self._views.get(name)
        if view is None:
            view = self._views[name] = self._columns[self.schema.index(name)][: self.count]
        return view

    @property
    def net_ids(self) -> np.ndarray:
        """Live net ids, sorted ascending (read-only view, invalid after spawn/despawn)."""
        view = self._ids_view
        if view is None:
            view = self._ids_view = self._ids[: self.count]
            view.flags.writeable = False
        return view

    def columns(self) -> list[np.ndarray]:
        """Views of every column over the live rows, in schema order (a new list each call;
        the views are invalid after spawn/despawn)."""
        views = self._column_views
        if views is None:
            views = self._column_views = [c[: self.count] for c in self._columns]
        return list(views)

    def rows(self, net_ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Row index of each net id; raises :class:`UnknownEntityError` if any is not live."""
        wanted = np.asarray(net_ids, dtype=np.int64).reshape(-1)
        live = self._ids[: self.count]
        rows = live.searchsorted(wanted)
        if len(rows) == 1:  # the common case (one player's row): no mask arrays
            row = int(rows[0])
            if row < self.count and live[row] == wanted[0]:
                return rows
            raise UnknownEntityError(f"net ids not live: {wanted.tolist()}")
        found = rows < self.count
        found[found] = live[rows[found]] == wanted[found]
        if not found.all():
            raise UnknownEntityError(f"net ids not live: {wanted[~found][:8].tolist()}")
        return rows

    def row(self, net_id: int) -> int:
        """Row of one live net id (a Python int); raises :class:`UnknownEntityError` if it is
        not live. Per-input game code looks up one row: this skips :meth:`rows`'s arrays."""
        row = self._row_of.get(net_id)
        if row is not None:
            return row
        live = self._ids[: self.count]
        try:
            row = int(live.searchsorted(net_id))
        except OverflowError:  # not a u32: cannot be live
            row = self.count
        if row < self.count and live[row] == net_id:
            if len(self._row_of) < _MAX_CACHED_ROWS:
                self._row_of[net_id] = row
            return row
        raise UnknownEntityError(f"net ids not live: [{net_id}]")

    def contains(self, net_ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``net_ids`` are live."""
        wanted = np.asarray(net_ids, dtype=np.int64).reshape(-1)
        live = self._ids[: self.count]
        rows = np.minimum(np.searchsorted(live, wanted), max(self.count - 1, 0))
        return (live[rows] == wanted) if self.count else np.zeros(len(wanted), dtype=bool)

    # -- structure ------------------------------------------------------------------------

    def spawn(self, n: int = 1, **values: np.ndarray | float) -> np.ndarray:
        """Add ``n`` rows with new net ids; ``values`` (keyword = field name with ``.`` -> ``__``,
        e.g. ``Transform__pos=...``) initialise columns, the rest are zero. Returns the ids."""
        if n < 0 or self.count + n > MAX_ENTITIES:
            raise UnknownEntityError(f"cannot spawn {n}: limit is {MAX_ENTITIES} live entities")
        fresh_before = self._next_id
        ids = self._allocate(n)
        self._structure_changed()
        first = self.count
        self._ensure_capacity(first + n)
        self._ids[first : first + n] = ids
        self.count += n
        for col in self._columns:  # rows past the old count hold stale values after despawns
            col[first : first + n] = 0
        for key, value in values.items():
            self._columns[self.schema.index(key.replace("__", "."))][first : first + n] = value
        if n:
            if self._next_id - fresh_before == n:
                # Fresh ids come as one increasing run (its lowest is the first): only live ids
                # that replace_all took from a server can sort above them.
                unsorted = first > 0 and int(ids[0]) < int(self._ids[first - 1])
            else:
                # Recycled ids come in the order they were freed, not sorted (and below the
                # fresh ids they follow): re-sort. Rare: only once 2**32 ids have been used.
                unsorted = True
            if unsorted:
                self._resort()
        return ids

    def despawn(self, net_ids: Iterable[int] | np.ndarray) -> None:
        """Remove the rows of ``net_ids`` (all must be live); their ids go to quarantine."""
        rows = self.rows(net_ids)
        if len(rows) == 0:
            return
        self._structure_changed()
        count = self.count
        if len(rows) == 1:
            # One row (a projectile, a player leaving): shift the rows above it down by one,
            # a slice copy per column instead of a mask and a boolean gather per column.
            row = int(rows[0])
            gone = self._ids[row : row + 1].copy()
            self._ids[row : count - 1] = self._ids[row + 1 : count]  # numpy handles overlap
            for col in self._columns:
                col[row : count - 1] = col[row + 1 : count]
            self.count = count - 1
        else:
            keep = np.ones(count, dtype=bool)
            keep[rows] = False
            gone = self._ids[:count][~keep]
            kept = int(np.count_nonzero(keep))
            self._ids[:kept] = self._ids[:count][keep]
            for col in self._columns:
                col[:kept] = col[:count][keep]
            self.count = kept
        pending = self._freed_pending_ids
        pending.extend(gone.tolist())
        self._freed_pending_at.extend([self.clock] * len(gone))
        if len(pending) >= _FREED_PENDING:
            self._settle_freed()

    def advance_clock(self) -> None:
        """Count one capture (called by SnapshotHistory.capture) for the id quarantine."""
        self.clock += 1

    def replace_all(self, net_ids: np.ndarray, columns: list[np.ndarray]) -> None:
        """Overwrite the whole content with rows ``net_ids`` (sorted) and ``columns`` (schema
        order). Used by the client replica, whose ids come from the server, not the allocator."""
        n = len(net_ids)
        self._structure_changed()
        self._ensure_capacity(n)
        self._ids[:n] = net_ids
        for col, values in zip(self._columns, columns, strict=True):
            col[:n] = values
        self.count = n

    # -- checkpoints ----------------------------------------------------------------------

    def export_state(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild this store exactly (columns, ids, allocator)."""
        self._settle_freed()
        state = {
            "__version__": np.array([_STATE_VERSION], dtype=np.int64),
            "__fingerprint__": np.array([self.schema.fingerprint], dtype=np.int64),
            "__allocator__": np.array([self._next_id, self.clock, self.quarantine], np.int64),
            "__net_ids__": self._ids[: self.count].copy(),
            "__freed_ids__": self._freed_ids.copy(),
            "__freed_at__": self._freed_at.copy(),
        }
        for field, col in zip(self.schema.fields, self._columns, strict=True):
            state[field.name] = col[: self.count].copy()
        return state

    def import_state(self, state: dict[str, np.ndarray]) -> None:
        """Replace this store with an :meth:`export_state` result; :class:`StorageError` if it
        does not match this schema or is inconsistent."""
        try:
            version = int(state["__version__"][0])
            fingerprint = int(state["__fingerprint__"][0])
            next_id, clock, quarantine = (int(v) for v in state["__allocator__"][:3])
            ids = np.asarray(state["__net_ids__"], dtype=np.uint32)
            freed_ids = np.asarray(state["__freed_ids__"], dtype=np.uint32)
            freed_at = np.asarray(state["__freed_at__"], dtype=np.int64)
            columns = [np.asarray(state[f.name]) for f in self.schema.fields]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise StorageError(f"replicated state is incomplete: {exc!r}") from exc
        if version != _STATE_VERSION or fingerprint != self.schema.fingerprint:
            raise StorageError("replicated state is from another version or schema")
        n = len(ids)
        shapes_ok = all(
            c.shape == f.encoding.column_shape(n)
            for c, f in zip(columns, self.schema.fields, strict=True)
        )
        sorted_ok = n == 0 or (bool(np.all(ids[1:] > ids[:-1])) and int(ids[0]) > 0)
        # _allocate takes the ids out of quarantine as a prefix: freed_at must not decrease.
        freed_ok = len(freed_ids) == len(freed_at) and bool(np.all(freed_at[1:] >= freed_at[:-1]))
        if not shapes_ok or not sorted_ok or not freed_ok or n > MAX_ENTITIES:
            raise StorageError("replicated state is inconsistent (shapes, order or counts)")
        self.replace_all(ids, columns)
        self._next_id, self.clock, self.quarantine = next_id, clock, quarantine
        self._freed_ids, self._freed_at = freed_ids.copy(), freed_at.copy()
        self._freed_pending_ids.clear()
        self._freed_pending_at.clear()

    # -- internals ------------------------------------------------------------------------

    def _structure_changed(self) -> None:
        self._views.clear()
        self._ids_view = self._column_views = None
        self._row_of.clear()
        self.generation += 1

    def _allocate(self, n: int) -> np.ndarray:
        fresh_room = _MAX_NET_ID + 1 - self._next_id
        if n <= fresh_room:  # prefer fresh ids: they keep rows sorted without a re-sort
            ids = np.arange(self._next_id, self._next_id + n, dtype=np.uint32)
            self._next_id += n
            return ids
        self._settle_freed()
        # freed_at is non-decreasing, so the ids out of quarantine are a prefix.
        ripe = int(np.searchsorted(self._freed_at, self.clock - self.quarantine, side="right"))
        take = n - fresh_room
        if take > ripe:
            raise UnknownEntityError("net id space exhausted (all recyclable ids in quarantine)")
        fresh = np.arange(self._next_id, _MAX_NET_ID + 1, dtype=np.uint32)
        self._next_id = _MAX_NET_ID + 1
        recycled = self._freed_ids[:take]
        self._freed_ids, self._freed_at = self._freed_ids[take:], self._freed_at[take:]
        return np.concatenate([fresh, recycled])

    def _settle_freed(self) -> None:
        """Fold the pending despawned ids into _freed_ids/_freed_at, keeping the newest
        MAX_RECYCLABLE_IDS (forgetting older ones is safe: they are never reused)."""
        pending_ids, pending_at = self._freed_pending_ids, self._freed_pending_at
        if not pending_ids:
            return
        ids = np.concatenate([self._freed_ids, np.array(pending_ids, dtype=np.uint32)])
        at = np.concatenate([self._freed_at, np.array(pending_at, dtype=np.int64)])
        self._freed_ids = ids[-MAX_RECYCLABLE_IDS:]
        self._freed_at = at[-MAX_RECYCLABLE_IDS:]
        pending_ids.clear()
        pending_at.clear()

    def _ensure_capacity(self, needed: int) -> None:
        if needed <= len(self._ids):
            return
        cap = max(needed, 2 * len(self._ids))
        grown = np.zeros(cap, dtype=np.uint32)
        grown[: self.count] = self._ids[: self.count]
        self._ids = grown
        for i, (field, col) in enumerate(zip(self.schema.fields, self._columns, strict=True)):
            new = np.zeros(field.encoding.column_shape(cap), dtype=field.encoding.column_dtype)
            new[: self.count] = col[: self.count]
            self._columns[i] = new

    def _resort(self) -> None:
        order = np.argsort(self._ids[: self.count], kind="stable")
        self._ids[: self.count] = self._ids[: self.count][order]
        for col in self._columns:
            col[: self.count] = col[: self.count][order]
