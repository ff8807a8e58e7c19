"""Snapshots: the quantized state of a room's columns at one tick, and the ring of recent ones.

Operations: :func:`capture` a :class:`~astranet.ecs.store.ColumnStore` into a :class:`Snapshot`
(net ids sorted ascending + one code array per field); keep the last ``capacity`` snapshots in a
:class:`SnapshotHistory` so any of them can serve as the delta base a client acknowledged.
Goals: capture is at most one vectorised quantize per column; a snapshot is immutable once built
(its arrays are marked read-only) so one object can be shared by every client's encode.
Incremental capture (:class:`SnapshotHistory`): a column whose bits did not change since the last
capture is not quantized again; its code array (and the net id array) is the *same object* as in
the previous snapshot, which the codec recognises as "no field changed" without comparing. In a
large store (PARTIAL_MIN_ROWS rows and more) only the rows whose bits changed are quantized.
Limits: DEFAULT_RING snapshots (64, about 2 s at 30 Hz); ids are u32 and start at 1.
Benchmark: benchmarks/tick.py, benchmarks/test_bench_replication.py.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from astranet.ecs.schema import Encoding, FieldSpec, Quantized, Schema
from astranet.ecs.store import ColumnStore
from astranet.errors import ConfigurationError, InvalidState
from astranet.replication._rows import rows_differ, same_ids

__all__ = [
    "DEFAULT_RING",
    "PARTIAL_MIN_ROWS",
    "Snapshot",
    "SnapshotHistory",
    "capture",
    "empty_snapshot",
]

# 64 snapshots = 2.1 s at 30 Hz: longer than any RTT we serve, so a client acking normally
# always has its base in the ring; older bases get a full snapshot instead.
DEFAULT_RING = 64
# Below this many rows re-quantizing a changed column whole costs less than finding its changed
# rows (measured: a 600-drone coop room, whose rows change structure every tick, replicated
# 30 % slower with the search at 256 rows); at 10,000 rows, quantizing only changed rows wins.
PARTIAL_MIN_ROWS = 2048
# Captures a mostly-changing column is quantized whole before the partial path is tried again.
DENSE_RETRY_CAPTURES = 16
MAX_SNAPSHOT_ID = (1 << 32) - 1  # ids are u32 on the wire


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """Quantized state: ``net_ids`` (sorted, u32) and ``codes[f]`` of shape ``(n, k_f)``."""

    id: int
    tick: int
    net_ids: np.ndarray
    codes: tuple[np.ndarray, ...]
    #: Derived arrays the codec builds once per snapshot and reuses while it serves as a delta
    #: base (a small room's codes as one int64 matrix): a cache, not state.
    derived: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.net_ids)

    def select(self, visible: np.ndarray | None) -> Snapshot:
        """The rows a client may see (``visible`` is a bool mask over rows; None = all)."""
        if visible is None:
            return self
        return Snapshot(
            self.id, self.tick, self.net_ids[visible], tuple(c[visible] for c in self.codes)
        )

    def same_state(self, other: Snapshot) -> bool:
        """Exact equality of ids and codes (ids/ticks of the snapshots are not compared)."""
        return np.array_equal(self.net_ids, other.net_ids) and all(
            np.array_equal(a, b) for a, b in zip(self.codes, other.codes, strict=True)
        )

    def checksum(self) -> int:
        """CRC32 of the state: ids as u32 LE, then each field's codes as u32 LE, row-major."""
        crc = zlib.crc32(np.ascontiguousarray(self.net_ids, dtype="<u4").tobytes())
        for codes in self.codes:
            crc = zlib.crc32(np.ascontiguousarray(codes, dtype="<u4").tobytes(), crc)
        return crc

    def dequantize(self, schema: Schema) -> list[np.ndarray]:
        """Column values of this state, in schema order."""
        return schema.dequantize(self.codes)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def empty_snapshot(schema: Schema) -> Snapshot:
    """A snapshot with no rows: the implicit base of a full encode."""
    return Snapshot(
        0,
        0,
        _frozen(np.zeros(0, dtype=np.uint32)),
        tuple(
            _frozen(np.zeros((0, len(f.encoding.code_bits)), dtype=f.encoding.code_dtype))
            for f in schema.fields
        ),
    )


def capture(store: ColumnStore, snapshot_id: int, tick: int) -> Snapshot:
    """Quantize every column of ``store`` (rows already sorted by net id)."""
    codes = store.schema.quantize(store.columns())
    return Snapshot(
        snapshot_id, tick, _frozen(store.net_ids.copy()), tuple(_frozen(c) for c in codes)
    )


class _LinearBatch:
    """Quantizes several :class:`Quantized` fields of one schema in one pass over a float64
    matrix of their components: five numpy calls in all instead of seven per field, which is
    most of a small room's capture. The same float64 operations as
    :func:`~astranet.ecs.quantize.quantize_linear`, element by element, with per-component
    ``lo``/``step``/``max_code`` rows (built once per set of fields)."""

    __slots__ = ("_plans",)

    def __init__(self) -> None:
        # Per set of fields: the lo/step/max_code rows and, per field, its column index,
        # component count, code dtype and component slice -- nothing looked up per capture.
        self._plans: dict[
            tuple[int, ...],
            tuple[np.ndarray, np.ndarray, np.ndarray, tuple[tuple[int, int, np.dtype, slice], ...]],
        ] = {}

    def quantize(
        self, fields: tuple[FieldSpec, ...], columns: list[np.ndarray], which: tuple[int, ...]
    ) -> list[np.ndarray]:
        """``fields[f].encoding.quantize(columns[f])`` for each ``f`` in ``which``."""
        plan = self._plans.get(which)
        if plan is None:
            plan = self._plans[which] = self._plan(fields, which)
        lo_row, step_row, top_row, specs = plan
        n = len(columns[which[0]])
        # One call gathers (and widens) every component: a new array the rest works in.
        scratch = np.concatenate(
            [columns[f].reshape(n, size) for f, size, _, _ in specs], axis=1, dtype=np.float64
        )
        np.subtract(scratch, lo_row, out=scratch)
        np.divide(scratch, step_row, out=scratch)
        np.fmax(scratch, 0.0, out=scratch)  # NaN, -inf -> 0 and +inf -> max (quantize_linear)
        np.fmin(scratch, top_row, out=scratch)
        np.rint(scratch, out=scratch)
        return [scratch[:, comps].astype(dtype) for _, _, dtype, comps in specs]

    @staticmethod
    def _plan(
        fields: tuple[FieldSpec, ...], which: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[tuple[int, int, np.dtype, slice], ...]]:
        encodings: list[Quantized] = [fields[f].encoding for f in which]  # type: ignore[misc]
        lo = [e.lo for e in encodings for _ in range(e.size)]
        step = [e.step for e in encodings for _ in range(e.size)]
        top = [e.max_code for e in encodings for _ in range(e.size)]
        specs = []
        start = 0
        for f, e in zip(which, encodings, strict=True):
            specs.append((f, e.size, e.code_dtype, slice(start, start + e.size)))
            start += e.size
        return (
            np.array(lo, dtype=np.float64),
            np.array(step, dtype=np.float64),
            np.array(top, dtype=np.float64),
            tuple(specs),
        )


class _IncrementalCapture:
    """The previous capture's net ids, column bits and codes: what the next capture may reuse."""

    __slots__ = ("codes", "dense_for", "ids", "layout", "linear", "raw")

    def __init__(self) -> None:
        self.linear = _LinearBatch()
        self.ids: np.ndarray | None = None  # frozen net ids of the last snapshot
        # (store, generation) at the last capture: while it holds, the rows are the same.
        self.layout: tuple[ColumnStore, int] | None = None
        self.raw: list[bytes] = []  # each column's bytes at the last capture
        self.codes: tuple[np.ndarray, ...] = ()
        # field -> captures left before trying the partial path again: a column most of whose
        # rows change every tick (a swarm's positions) is quantized whole without the search.
        self.dense_for: dict[int, int] = {}

    def capture(self, store: ColumnStore, snapshot_id: int, tick: int) -> Snapshot:
        """Like :func:`capture`, reusing whatever did not change since the previous call."""
        previous_ids = self.ids
        layout = self.layout
        # No structural change since the last capture (ColumnStore.generation): the same rows,
        # without reading the ids. Otherwise compare them (a spawn and a despawn may cancel).
        same_rows = previous_ids is not None and (
            (layout is not None and layout[0] is store and layout[1] == store.generation)
            or same_ids(store.net_ids, previous_ids)
        )
        ids = previous_ids if same_rows else _frozen(store.net_ids.copy())
        fields = store.schema.fields
        codes: list[np.ndarray | None] = []
        raw: list[bytes] = []
        columns = store.columns()
        linear: list[int] = []  # changed Quantized fields, quantized together below
        previous_raw, previous_codes = self.raw, self.codes
        for f, column in enumerate(columns):
            bits = column.tobytes()
            raw.append(bits)
            if same_rows and bits == previous_raw[f]:
                codes.append(previous_codes[f])  # the very same frozen array: "unchanged"
                continue
            encoding = fields[f].encoding
            if previous_ids is not None and len(ids) >= PARTIAL_MIN_ROWS and self._try_partial(f):
                codes.append(_frozen(self._partial(encoding, column, f, ids, previous_ids)))
            elif type(encoding) is Quantized:
                codes.append(None)
                linear.append(f)
            else:
                codes.append(_frozen(encoding.quantize(column)))
        if len(linear) == 1:
            f = linear[0]
            codes[f] = _frozen(fields[f].encoding.quantize(columns[f]))
        elif linear:
            batch = self.linear.quantize(fields, columns, tuple(linear))
            for f, field_codes in zip(linear, batch, strict=True):
                codes[f] = _frozen(field_codes)
        self.ids, self.layout, self.raw = ids, (store, store.generation), raw
        self.codes = tuple(codes)  # type: ignore[arg-type]  # every None was filled above
        return Snapshot(snapshot_id, tick, ids, self.codes)

    def _try_partial(self, f: int) -> bool:
        left = self.dense_for.get(f, 0)
        if left:
            self.dense_for[f] = left - 1
            return False
        return True

    def _partial(
        self, encoding: Encoding, column: np.ndarray, f: int, ids: np.ndarray, old_ids: np.ndarray
    ) -> np.ndarray:
        """Codes of ``column``: rows that existed with the same bits keep their old codes."""
        old_codes = self.codes[f]
        old_column = np.frombuffer(self.raw[f], dtype=column.dtype).reshape(
            (len(old_ids), *column.shape[1:])
        )
        if ids is old_ids:  # same rows (ids sorted on both sides)
            kept_rows: np.ndarray | slice = slice(None)
            old_rows: np.ndarray | slice = slice(None)
            stale = rows_differ(column, old_column)
        else:
            pos = np.minimum(np.searchsorted(old_ids, ids), max(len(old_ids) - 1, 0))
            existed = (old_ids[pos] == ids) if len(old_ids) else np.zeros(len(ids), dtype=bool)
            kept_rows, old_rows = np.flatnonzero(existed), pos[existed]
            stale = np.ones(len(ids), dtype=bool)
            stale[kept_rows] = rows_differ(column[kept_rows], old_column[old_rows])
        if np.count_nonzero(stale) * 2 > len(ids):
            self.dense_for[f] = DENSE_RETRY_CAPTURES
            return encoding.quantize(column)
        codes = np.empty_like(old_codes, shape=(len(ids), old_codes.shape[1]))
        codes[kept_rows] = old_codes[old_rows]
        changed = np.flatnonzero(stale)
        if len(changed):
            codes[changed] = encoding.quantize(column[changed])
        return codes


class SnapshotHistory:
    """The ring of a room's recent snapshots, by id. One per room, shared by its clients."""

    def __init__(self, store: ColumnStore, capacity: int = DEFAULT_RING) -> None:
        if capacity < 1:
            raise ConfigurationError("snapshot ring capacity must be >= 1")
        self.store = store
        self.capacity = capacity
        self._ring: OrderedDict[int, Snapshot] = OrderedDict()
        self._next_id = 1
        self._incremental = _IncrementalCapture()

    def capture(self, tick: int) -> Snapshot:
        """Capture the store as the next snapshot id and push it (evicting the oldest)."""
        if self._next_id > MAX_SNAPSHOT_ID:
            raise InvalidState("snapshot id space (u32) exhausted")
        snap = self._incremental.capture(self.store, self._next_id, tick)
        self._next_id += 1
        self.store.advance_clock()
        self._ring[snap.id] = snap
        while len(self._ring) > self.capacity:
            self._ring.popitem(last=False)
        return snap

    @property
    def next_id(self) -> int:
        """The id the next capture will get."""
        return self._next_id

    def resume_from(self, next_id: int) -> None:
        """Continue numbering at ``next_id`` (clamped to u32), e.g. above the ids a previous
        server process sent; only before the first capture."""
        if self._ring:
            raise InvalidState("resume_from() after snapshots were captured")
        self._next_id = max(1, min(MAX_SNAPSHOT_ID, next_id))

    def get(self, snapshot_id: int | None) -> Snapshot | None:
        """The snapshot with that id if it is still in the ring, else None."""
        return None if snapshot_id is None else self._ring.get(snapshot_id)

    @property
    def lookup(self) -> Callable[[int | None], Snapshot | None]:
        """:meth:`get` as the ring's own ``dict.get`` (None and forgotten ids give None): one
        C call per client in loops over a room's clients."""
        return self._ring.get

    @property
    def latest(self) -> Snapshot | None:
        return next(reversed(self._ring.values())) if self._ring else None

    def __len__(self) -> int:
        return len(self._ring)

    def __iter__(self) -> Iterator[Snapshot]:
        """The kept snapshots, oldest first."""
        return iter(self._ring.values())

    def __contains__(self, snapshot_id: object) -> bool:
        return snapshot_id in self._ring
