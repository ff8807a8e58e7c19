"""Interest management under a byte budget: what each client gets of a snapshot, and when.

Three parts:

* :class:`Relevance` -- what a game's ``Game.relevance`` hook returns for one client: the rows
  of the room's store that client may see, each with a priority weight (> 0; larger = more
  important, e.g. near the avatar). :class:`SpatialGrid` is the helper for the common case
  (entities within a radius of the viewer, priority falling with distance).
* :class:`InterestBaseline` -- the server's per-client memory: the exact state it sent in each
  recent snapshot (a per-client *composite*, not a row selection of the room's snapshot), the
  newest acked one, and each relevant entity's accumulated priority.
* :class:`BudgetedEncoder` -- per tick, builds every client's next composite and payload
  (:meth:`BudgetedEncoder.encode_many`: all clients in one vectorised pass).

How a tick is decided (lightyear-style priority accumulation). ``L`` is the composite sent last
(what the client will hold once it arrives), ``B`` the newest one it acked (the delta base),
``C`` the room's snapshot now:

1. Every relevant entity's priority grows by its weight; candidates are the relevant entities
   that are new to the client (spawns) or whose codes differ from ``L`` (updates).
2. Entities in ``L`` that left relevance or no longer exist are despawned (cheap: 4 bytes).
3. Candidates are taken in priority order (near ones, weight >= 1, first) while the payload
   fits the per-tick byte budget, and while this tick's additions stay within
   ``budget / (in flight + 1)`` (each is repeated until acked); a sent entity's priority drops
   to 0. The rest are **deferred**: they keep the value of ``L`` (not a despawn, and no jump
   back), so the client shows them as last sent and their next update is a correct delta from
   what the client holds.
4. The composite ``N`` (``L`` with those changes) is encoded against ``B`` (the codec's
   layout, batched: astranet.replication.batch_codec). If not even the near ones fit on ``L``
   (plan A), the plan is rebuilt on ``B`` (plan B: what is in flight is re-sent first after
   the near ones); if nothing fits even then, ``N = B`` (a header-only payload).

The plan knows the payload size of every prefix of a client's candidates before encoding
anything: running counts of rows, rows also in ``B``, updated rows and per-field changed rows
give the exact header, id, mask and spawn bytes, and running maxima of the deltas give widths
that are never below the real ones. A payload therefore never exceeds the budget
(``budget_bytes`` >= MIN_BUDGET_BYTES) and is encoded exactly once.

A call with the same clients as the last one (each still holding what it was sent then) reuses
that call's flat tables: its (client, entity) pairs give the accumulated priorities and where
each pair sits in the last-sent composites in one lookup.

Nothing on the wire changes: every payload is an ordinary delta (``encode_delta``'s layout)
against a snapshot the client acked.
Goals: a tick's work is O(relevant (client, entity) pairs) in a fixed number of numpy passes,
whatever the number of clients (no per-client numpy calls beyond slicing; no per-entity Python
loop); memory is ``capacity`` composites of relevant rows per client. Limits: DEFAULT_COMPOSITES
kept per client (an ack older than that gets a full payload); budgets below MIN_BUDGET_BYTES are
refused; a client's plan weighs at most twice the candidates it took last tick (+32, + every
near one), so a client whose budget suddenly allows far more ramps up over a few ticks.
Benchmark: benchmarks/interest.py (10,000 entities, 100 clients, 32 kB/s each).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from astranet.ecs.schema import Schema
from astranet.errors import ConfigurationError
from astranet.replication.batch_codec import (
    FlatRows,
    as_codes,
    as_words,
    bit_lengths,
    encode_flat,
    segment_max,
    segment_starts,
    segment_sums,
    words_differ,
    zigzag,
)
from astranet.replication.codec import HEADER_BYTES_ESTIMATE, compress_payload, encode_payload
from astranet.replication.fanout import ClientBaseline, EncodedSnapshot
from astranet.replication.snapshot import Snapshot, empty_snapshot

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_COMPOSITES",
    "ENVELOPE_BYTES",
    "MIN_BUDGET_BYTES",
    "BudgetedEncoder",
    "InterestBaseline",
    "Relevance",
    "SpatialGrid",
]

# 32 composites = ~1 s at 30 Hz: an ack older than that is a client so far behind that a full
# payload is the right answer; memory stays 32 x relevant rows per client.
DEFAULT_COMPOSITES = 32
# A full payload header is ~10 bytes (v2: varints, field count, fingerprint) and a spawned
# row carries every field; below 64 bytes a budget could not carry a single spawn.
MIN_BUDGET_BYTES = 64
# What a Snapshot message adds around its payload, at most: the map envelope is 97 bytes with
# u32 ids and a u64 tick at their widest (the compact one is smaller); reserved from a
# bytes-per-second budget so whole messages stay within it.
ENVELOPE_BYTES = 100
_ID_BYTES = 4


@dataclass(frozen=True, slots=True)
class Relevance:
    """Rows (indices into the room's store, ascending) one client may see, and their weights."""

    rows: np.ndarray
    priority: np.ndarray

    @classmethod
    def everything(cls, n: int) -> Relevance:
        return cls(np.arange(n), np.ones(n))


class SpatialGrid:
    """Uniform grid over 2-D positions: who is within ``radius`` of a point, vectorised.

    Build once per tick (``SpatialGrid(positions, cell_size)``: one sort), then query per
    client; a query touches only the cells overlapping the circle. Choose ``cell_size`` about
    the query radius.
    """

    def __init__(self, positions: np.ndarray, cell_size: float) -> None:
        if not cell_size > 0:
            raise ConfigurationError(f"cell_size must be > 0, got {cell_size!r}")
        pos = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
        self.positions = pos
        self._x = np.ascontiguousarray(pos[:, 0])
        self._y = np.ascontiguousarray(pos[:, 1])
        self.cell_size = float(cell_size)
        cells = np.floor(pos / self.cell_size).astype(np.int64)
        self._origin = cells.min(axis=0) if len(cells) else np.zeros(2, np.int64)
        local = cells - self._origin
        self._width = int(local[:, 1].max()) + 1 if len(local) else 1
        keys = local[:, 0] * self._width + local[:, 1]
        # Rows grouped by cell, ascending within one: a plain sort of (cell, row) packed in an
        # int64 (~10x a stable argsort), else the argsort.
        row_bits = max(len(keys) - 1, 1).bit_length()
        if len(keys) and int(keys.max()).bit_length() + row_bits <= 62:
            packed = np.sort((keys << row_bits) | np.arange(len(keys)))
            self._order = packed & ((1 << row_bits) - 1)
            self._sorted_keys = packed >> row_bits
        else:
            self._order = np.argsort(keys, kind="stable")
            self._sorted_keys = keys[self._order]
        self._span = local.max(axis=0) if len(local) else np.zeros(2, np.int64)
        self._cell_x, self._cell_y = self._x[self._order], self._y[self._order]

    def within(self, center: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Rows within ``radius`` of ``center`` (ascending) and their distances."""
        c = np.asarray(center, dtype=np.float64).reshape(2)
        low = np.floor((c - radius) / self.cell_size).astype(np.int64) - self._origin
        high = np.floor((c + radius) / self.cell_size).astype(np.int64) - self._origin
        low = np.maximum(low, 0)
        high = np.minimum(high, self._span)
        if (high < low).any():
            return np.zeros(0, np.int64), np.zeros(0)
        # One key range per grid column: [x*w + ylo, x*w + yhi].
        xs = np.arange(low[0], high[0] + 1)
        starts = np.searchsorted(self._sorted_keys, xs * self._width + low[1], side="left")
        ends = np.searchsorted(self._sorted_keys, xs * self._width + high[1], side="right")
        lengths = ends - starts
        if lengths.sum() == 0:
            return np.zeros(0, np.int64), np.zeros(0)
        # Concatenate the ranges without a Python loop over columns.
        offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        picked = np.sort(self._order[np.arange(lengths.sum()) + offsets])
        offset = self.positions[picked] - c
        dist_sq = np.einsum("ij,ij->i", offset, offset)
        inside = dist_sq <= radius * radius
        return picked[inside], np.sqrt(dist_sq[inside])

    def relevance_many(
        self,
        centers: np.ndarray,
        radius: float,
        *,
        near_radius: float,
        far_priority: float = 0.1,
    ) -> list[Relevance]:
        """:meth:`relevance` for many viewers at once (one vectorised pass, no per-viewer
        numpy calls beyond the final split): what a game with many clients should call once
        per tick, e.g. from its first ``Game.relevance`` call of the tick."""
        c = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
        n = len(c)
        if n == 0:
            return []
        low = np.floor((c - radius) / self.cell_size).astype(np.int64) - self._origin
        high = np.floor((c + radius) / self.cell_size).astype(np.int64) - self._origin
        low = np.maximum(low, 0)
        high = np.minimum(high, self._span)
        columns = np.maximum(high[:, 0] - low[:, 0] + 1, 0) * (high[:, 1] >= low[:, 1])
        viewer_of_column = np.repeat(np.arange(n), columns)
        first = np.concatenate(([0], np.cumsum(columns)[:-1]))
        xs = low[viewer_of_column, 0] + np.arange(columns.sum()) - first[viewer_of_column]
        base = xs * self._width
        starts = np.searchsorted(self._sorted_keys, base + low[viewer_of_column, 1], "left")
        ends = np.searchsorted(self._sorted_keys, base + high[viewer_of_column, 1], "right")
        lengths = ends - starts
        viewer = np.repeat(viewer_of_column, lengths)
        offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        at = np.arange(lengths.sum()) + offsets  # positions in cell order
        # Coordinates kept in cell order: runs of adjacent reads (1-D: a gather of (m, 2)
        # rows is ~10x slower); squared distances, the square root only for what is inside;
        # rows looked up only for those.
        cx, cy = np.ascontiguousarray(c[:, 0]), np.ascontiguousarray(c[:, 1])
        dx = self._cell_x[at] - cx[viewer]
        dy = self._cell_y[at] - cy[viewer]
        dist_sq = dx * dx + dy * dy
        inside = np.flatnonzero(dist_sq <= radius * radius)
        # Rows ascending per viewer: the (viewer, row) keys are unique, so a plain sort of
        # them (not an argsort) orders the pairs, and both halves come back out of the key.
        span = len(self.positions) + 1
        keys = viewer[inside] * span + self._order[at[inside]]
        if n * span < 1 << 31:  # 32-bit keys sort ~2x faster
            keys = keys.astype(np.int32)
        keys = np.sort(keys)
        viewer, picked = keys // span, keys % span
        dx = self._x[picked] - cx[viewer]
        dy = self._y[picked] - cy[viewer]
        dist = np.sqrt(dx * dx + dy * dy)
        falloff = (near_radius / np.maximum(dist, near_radius)) ** 2
        priority = np.maximum(falloff, far_priority)
        cuts = [0, *np.searchsorted(viewer, np.arange(1, n)).tolist(), len(viewer)]
        return [  # slices (views): np.split costs ~5 us a piece
            Relevance(picked[lo:hi], priority[lo:hi]) for lo, hi in itertools.pairwise(cuts)
        ]

    def relevance(
        self,
        center: np.ndarray,
        radius: float,
        *,
        near_radius: float,
        far_priority: float = 0.1,
    ) -> Relevance:
        """Entities within ``radius``: priority 1 within ``near_radius``, then falling with
        the square of the distance (``(near_radius / d)**2``), never below ``far_priority``.

        Under a tight budget an entity of weight w is sent about every ``1/w`` ticks once the
        near ones are served (lightyear's accumulation), so the defaults give 30 Hz near,
        ~3 Hz at the edge of the radius.
        """
        rows, dist = self.within(center, radius)
        falloff = (near_radius / np.maximum(dist, near_radius)) ** 2
        return Relevance(rows, np.maximum(falloff, far_priority))


class InterestBaseline(ClientBaseline):
    """Server-side replication state of one client under interest management.

    A :class:`~astranet.replication.fanout.ClientBaseline` (``ack``, ``reset``, ``acked_id``)
    whose sent-id memory holds the exact composite sent under each id, plus the latest one and
    each relevant entity's accumulated priority.
    """

    __slots__ = ("_prio", "_prio_ids", "_took", "latest")

    def __init__(self, capacity: int = DEFAULT_COMPOSITES) -> None:
        super().__init__(capacity)
        self.latest: Snapshot | None = None  # the composite sent last
        self._prio_ids = np.zeros(0, np.uint32)  # relevant ids last tick, ascending
        self._prio = np.zeros(0)
        self._took = _NO_LIMIT  # candidates taken last tick: bounds how many to weigh now

    def reset(self) -> None:
        """Forget everything (e.g. on Resume): the next payload is full."""
        super().reset()
        self._took = _NO_LIMIT
        self.latest = None

    def sent(self, snapshot_id: int) -> Snapshot | None:
        """The composite sent under ``snapshot_id`` (for tests: what the client decodes)."""
        return self._sent.get(snapshot_id)  # type: ignore[return-value]

    @property
    def base(self) -> Snapshot | None:
        return None if self.acked_id is None else self.sent(self.acked_id)

    def record(self, composite: Snapshot) -> None:
        self.record_sent(composite.id, composite)  # type: ignore[arg-type]
        self.latest = composite


@dataclass(slots=True)
class TickStats:
    """What one client's encode decided this tick (read by benchmarks and tests)."""

    sent_ids: np.ndarray  # entities whose current value went out this tick (updates + spawns)
    deferred: int
    despawned: int
    attempts: int  # 1: plan A, 2: plan B, 3: the last resort (see the module docstring)
    payload_bytes: int
    from_base: bool  # plan B (or the last resort): built on the acked state, not the last sent


# Above this many (client, row) slots (64 MiB of int32) pair lookups sort instead.
_DENSE_SLOTS = 1 << 24
# Candidates are ordered by one sort of int64 keys: client, then tier (near first, then in
# flight in plan B), then accumulated priority descending (its float64 bit pattern, which
# orders as an integer for positive values, cut to the bits left over), then the candidate's
# own index (ties by net id); fewer priority bits than this and it falls back to a lexsort.
_MIN_RANK_BITS = 28  # 11 exponent bits + 16 of the mantissa (+ the sign bit, always 0)
_OWNER_SPAN = 1 << 33  # above any zigzagged code (< 2**32): per-client running maxima
# How many candidates a client's plan weighs: twice what it took last tick, plus slack (and
# every near one). A client taking everything weighed grows its limit the next tick; the
# limit only saves work on candidates that could not fit anyway.
_NO_LIMIT = 1 << 40
_LIMIT_SLACK = 32


class _PairIndex:
    """Where (client, store row) pair keys sit in a table, for many lookups at once.

    Dense while the key space is small (one int32 slot array reused tick to tick; a lookup
    writes and clears only the table's own slots), else sorted keys and ``searchsorted``.
    """

    def __init__(self) -> None:
        self._slots = np.zeros(0, dtype=np.int32)

    def find(self, table: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        """Index in ``table`` of each ``wanted`` key, or -1. Keys of ``table`` may repeat only
        where no ``wanted`` key asks (entities gone from the store)."""
        if len(table) == 0 or len(wanted) == 0:
            return np.full(len(wanted), -1, dtype=np.int64)
        size = int(max(table.max(), wanted.max())) + 1
        if size <= _DENSE_SLOTS:
            if len(self._slots) < size:
                self._slots = np.full(size, -1, dtype=np.int32)
            slots = self._slots
            slots[table] = np.arange(len(table), dtype=np.int32)
            found = slots[wanted].astype(np.int64)
            slots[table] = -1
            return found
        order = np.argsort(table, kind="stable")
        keys = table[order]
        at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        return np.where(keys[at] == wanted, order[at], -1)


class _RowsOf:
    """Net id -> row of this tick's snapshot (``len(snapshot)`` for an id not in it).

    A dense table while ids stay within a few times the row count (they are allocated
    sequentially), else ``searchsorted``.
    """

    __slots__ = ("_gone", "_ids", "_table")

    def __init__(self, net_ids: np.ndarray) -> None:
        self._ids = net_ids
        self._gone = len(net_ids)
        top = int(net_ids[-1]) if len(net_ids) else 0
        self._table: np.ndarray | None = None
        if top <= 4 * len(net_ids) + (1 << 16):
            table = np.full(top + 2, self._gone, dtype=np.int64)
            table[net_ids] = np.arange(len(net_ids))
            self._table = table

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        table = self._table
        if table is not None:
            return table[np.minimum(ids, len(table) - 1)]
        net_ids = self._ids
        if len(net_ids) == 0:
            return np.zeros(len(ids), dtype=np.int64)
        at = np.minimum(np.searchsorted(net_ids, ids), len(net_ids) - 1)
        return np.where(net_ids[at] == ids, at, len(net_ids))


def _ceil8(bits: np.ndarray) -> np.ndarray:
    return (bits + 7) // 8


def _uleb_size(values: np.ndarray) -> np.ndarray:
    """Bytes of each value as an unsigned LEB128 varint (7 bits a byte)."""
    size = np.ones(np.shape(values), dtype=np.int64)
    for bound in (1 << 7, 1 << 14, 1 << 21, 1 << 28):
        size += values >= bound
    return size


def _running(steps: np.ndarray, owner: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per row of ``steps`` (one column per candidate, grouped by ``owner``; ``starts`` =
    each client's first column): the running sum over that client's candidates so far."""
    out = np.empty(steps.shape, dtype=np.int32)
    for row, values in enumerate(steps):  # 1-D cumsums: ~20x faster than one along axis 1
        total = np.cumsum(values, dtype=np.int32)
        before = np.concatenate(([0], total))[starts]
        out[row] = total - before[owner]
    return out


def _by_client_then_rank(
    client: np.ndarray, tier: np.ndarray, rank: np.ndarray, n_clients: int
) -> np.ndarray:
    """The permutation ordering items by ``client`` (non-decreasing already), then ``tier``
    (0..3) and ``rank`` (>= 0) descending, then index: one sort of packed int64 keys
    (``np.sort`` of integers is ~3x an ``argsort`` of floats); ranks exact to 2**-16 relative
    or better (a lexsort when the key has no room for that)."""
    m = len(rank)
    index_bits = max(int(m - 1).bit_length(), 1)
    client_bits = max(int(n_clients - 1).bit_length(), 1)
    rank_bits = 63 - index_bits - client_bits - 2
    if rank_bits < _MIN_RANK_BITS:
        return np.lexsort((-rank, -tier, client))
    pattern = np.ascontiguousarray(rank, dtype=np.float64).view(np.int64)  # >= 0: ordered
    descending = ((1 << rank_bits) - 1) - (pattern >> (63 - rank_bits))
    keys = (client.astype(np.int64) << (63 - client_bits)) | (descending << index_bits)
    keys |= (3 - tier.astype(np.int64)) << (61 - client_bits)
    keys |= np.arange(m, dtype=np.int64)
    return np.sort(keys) & ((1 << index_bits) - 1)


def _overlay(values: np.ndarray, source: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``values`` (words, per pair) with ``source[at]`` (codes) where ``at >= 0``."""
    words = as_words(source)
    if len(words) == 0:
        return values.copy()
    return _choose(at >= 0, words[np.maximum(at, 0)], values)


def _choose(mask: np.ndarray, yes: np.ndarray, no: np.ndarray) -> np.ndarray:
    """``np.where`` per row, for 1-D words or ``(n, k)`` codes."""
    return np.where(mask if yes.ndim == 1 else mask[:, None], yes, no)


@dataclass(slots=True)
class _Tick:
    """This tick's relevant (client, entity) pairs, flat, and what every client acked."""

    n_clients: int
    rows_of: _RowsOf  # net id -> row of the current snapshot
    width: int  # pair key = client * width + store row; row width - 1 = gone from the store
    client: np.ndarray  # per pair, non-decreasing
    pair_starts: np.ndarray  # each client's first pair (n + 1 offsets)
    row: np.ndarray
    ids: np.ndarray
    weight: np.ndarray
    prio: np.ndarray  # accumulated priority, including this tick's weight
    current: tuple[np.ndarray, ...]  # per field: the pairs' current codes
    base: FlatRows  # every client's acked composite (no rows: none)
    has_base: np.ndarray  # per client: it acked one (a delta), else a full payload
    base_pos: np.ndarray  # per pair: index in ``base``, or -1
    base_value: tuple[np.ndarray, ...]  # per field: the pairs' acked codes (current if none)
    # Every client's last-sent composite as one table and each pair's index in it (or -1),
    # when last tick's tables could be reused; else None.
    latest: tuple[FlatRows, np.ndarray] | None


@dataclass(slots=True)
class _Decision:
    """One plan for every client: which pairs' current values go out, and whether it fits."""

    held_pos: np.ndarray  # per pair: index in the start table, or -1
    start_value: tuple[np.ndarray, ...]  # per field: codes held in the start (current if not)
    in_flight: np.ndarray  # per pair: held in the start with a value the client has not acked
    chosen: np.ndarray  # per pair
    candidates: np.ndarray  # per client
    take: np.ndarray  # per client
    fits: np.ndarray  # per client: the payload fits the budget
    near_short: np.ndarray  # per client: some near candidate did not fit
    despawned: np.ndarray  # per client: start rows that left relevance


@dataclass(slots=True)
class _LastTick:
    """What the last encode_many left, for the next to reuse when the clients are the same."""

    clients: tuple[InterestBaseline, ...]
    composites: list[Snapshot]  # recorded, per client (identity says it is still the latest)
    client: np.ndarray  # per pair
    ids: np.ndarray  # per pair: net id
    prio: np.ndarray  # per pair: accumulated priority after the sends
    sent: FlatRows  # every client's composite, one table (the composites are its slices)
    sent_pos: np.ndarray  # per pair: its index in ``sent``, or -1


class BudgetedEncoder:
    """Per-room: the next payload of each client, within its byte budget per tick.

    :meth:`encode_many` plans and encodes every client of a tick in one vectorised pass (what
    the server calls); :meth:`encode_for` is the same for one client. Each plan knows the
    size of every prefix of its candidates exactly (an upper bound only in the delta widths),
    so every payload is encoded once and none exceeds the budget.
    """

    def __init__(self, schema: Schema, *, compress: bool = False) -> None:
        # No LZ4 by default: bit-packed deltas rarely shrink, and sizes are planned raw.
        self.schema = schema
        self.compress = compress
        self._empty = empty_snapshot(schema)
        self._field_bits = [np.array(f.encoding.code_bits, dtype=np.int64) for f in schema.fields]
        # A full payload's header names the schema: field count (varint) and fingerprint (u32).
        self._full_prefix = int(_uleb_size(np.array(len(schema.fields)))) + 4
        self._pairs = _PairIndex()
        self._last: _LastTick | None = None
        self.last: TickStats | None = None  # the last client's of the last call
        self.stats: list[TickStats] = []  # per client of the last call, in order
        self.overshoots = 0  # payloads over their planned bound (a bug; tests assert 0)

    def encode_for(
        self,
        client: InterestBaseline,
        current: Snapshot,
        relevance: Relevance,
        budget_bytes: int,
    ) -> EncodedSnapshot:
        """This tick's payload for ``client``: at most ``budget_bytes`` bytes."""
        return self.encode_many([client], current, [relevance], budget_bytes)[0]

    def encode_many(
        self,
        clients: Sequence[InterestBaseline],
        current: Snapshot,
        relevances: Sequence[Relevance],
        budget_bytes: int,
    ) -> list[EncodedSnapshot]:
        """This tick's payload for each of ``clients`` (distinct), each within the budget."""
        if budget_bytes < MIN_BUDGET_BYTES:
            raise ConfigurationError(f"budget_bytes must be >= {MIN_BUDGET_BYTES}")
        if len(clients) != len(relevances):
            raise ConfigurationError("encode_many needs one relevance per client")
        if len({id(c) for c in clients}) != len(clients):
            raise ConfigurationError("a client appears twice in one encode_many")
        if not clients:
            self.stats = []
            return []
        bases = [c.base for c in clients]
        helds = [b if b is not None else self._empty for b in bases]
        latests = [
            c.latest if c.latest is not None else h for c, h in zip(clients, helds, strict=True)
        ]
        # Whatever is added now is repeated until acked, ~in_flight more times: plan A keeps
        # each tick's additions to 1/(in_flight + 1) of the budget so the carry stays inside
        # it (else plan B would revert deferred entities every few ticks).
        cap = np.array(
            [
                (budget_bytes - HEADER_BYTES_ESTIMATE) / (max(0, lat.id - b.id) + 1)
                if b is not None and lat is not b
                else np.inf
                for lat, b in zip(latests, bases, strict=True)
            ]
        )
        on_held = np.array([lat is h for lat, h in zip(latests, helds, strict=True)])
        tick = self._tick(clients, current, relevances, bases)
        no_b = np.zeros(len(clients), dtype=bool)
        limit = np.array([min(2 * c._took + _LIMIT_SLACK, _NO_LIMIT) for c in clients])
        decision = self._decide(tick, latests, no_b, cap, budget_bytes, None, limit)
        # Repeating far updates in flight would starve near ones (or nothing fits): those
        # clients build on their acked state instead, re-sending what is in flight first.
        plan_b = ~on_held & (decision.near_short | ~decision.fits)
        if plan_b.any():
            starts = [h if b else lat for h, lat, b in zip(helds, latests, plan_b, strict=True)]
            no_cap = np.where(plan_b, np.inf, cap)
            decision = self._decide(
                tick, starts, plan_b, no_cap, budget_bytes, decision.in_flight, limit
            )
        return self._emit(clients, current, tick, decision, plan_b, helds, bases, budget_bytes)

    def _tick(
        self,
        clients: Sequence[InterestBaseline],
        current: Snapshot,
        relevances: Sequence[Relevance],
        bases: Sequence[Snapshot | None],
    ) -> _Tick:
        """Gather the pairs, accumulate their priority, and find them in the acked bases."""
        n = len(clients)
        picked = [np.asarray(r.rows).reshape(-1) for r in relevances]
        counts = np.array([len(r) for r in picked], dtype=np.int64)
        row = np.concatenate(picked).astype(np.int64, copy=False)
        weight = np.concatenate(
            [np.asarray(r.priority, dtype=np.float64).reshape(-1) for r in relevances]
        )
        client = np.repeat(np.arange(n), counts)
        if len(row) > 1 and np.any((row[1:] <= row[:-1]) & (client[1:] == client[:-1])):
            # A game's rows out of order or repeated: sorted (composites are by net id) and
            # each entity once, with its largest weight.
            order = np.lexsort((-weight, row, client))
            client, row, weight = client[order], row[order], weight[order]
            first = np.r_[True, (row[1:] != row[:-1]) | (client[1:] != client[:-1])]
            client, row, weight = client[first], row[first], weight[first]
            counts = np.bincount(client, minlength=n).astype(np.int64)
        width = len(current) + 1
        wanted = client * width + row
        rows_of = _RowsOf(current.net_ids)
        prio = weight.copy()
        last = self._last
        latest = None
        if (
            last is not None
            and len(last.clients) == n
            and all(c is k for c, k in zip(clients, last.clients, strict=True))
            and all(c.latest is s for c, s in zip(clients, last.composites, strict=True))
        ):
            # The same clients as last tick, each holding what it was sent then: last tick's
            # flat pair table gives both the priorities and where each pair sits in the
            # composites (they are made of last tick's pairs), with one lookup.
            prio_rows = rows_of(last.ids)
            at = self._pairs.find(last.client * width + prio_rows, wanted)
            known = at >= 0
            prio[known] += last.prio[at[known]]
            pos = last.sent_pos[np.maximum(at, 0)] if len(last.sent_pos) else at
            latest = (last.sent, np.where(known, pos, -1))
        elif sum(len(c._prio_ids) for c in clients):
            prio_counts = np.array([len(c._prio_ids) for c in clients], dtype=np.int64)
            owner = np.repeat(np.arange(n), prio_counts)
            prio_rows = rows_of(np.concatenate([c._prio_ids for c in clients]))
            at = self._pairs.find(owner * width + prio_rows, wanted)
            known = at >= 0
            prio[known] += np.concatenate([c._prio for c in clients])[at[known]]
        self._last = None  # until this call's _emit records it
        base = FlatRows.of(self.schema, bases)
        base_rows = rows_of(base.net_ids)
        base_pos = self._pairs.find(base.clients() * width + base_rows, wanted)
        cur = tuple(as_words(np.ascontiguousarray(codes))[row] for codes in current.codes)
        return _Tick(
            n,
            rows_of,
            width,
            client,
            segment_starts(counts),
            row,
            current.net_ids[row],
            weight,
            prio,
            cur,
            base,
            np.array([b is not None for b in bases], dtype=bool),
            base_pos,
            tuple(_overlay(now, base.codes[f], base_pos) for f, now in enumerate(cur)),
            latest,
        )

    def _size(
        self,
        n_total: np.ndarray,
        n_common: np.ndarray,
        n_update: np.ndarray,
        n_changed: list[np.ndarray],
        widths: list[np.ndarray],
        n_base: np.ndarray,
        has_base: np.ndarray,
    ) -> np.ndarray:
        """Payload bytes (codec.encode_delta's v2 layout) from its counts and widths; an upper
        bound where the codec may pick something smaller (a row gap list for the changed-row
        mask, no field masks when every updated row changed in every field)."""
        n_spawn = n_total - n_common
        n_despawn = n_base - n_common
        structure = (n_spawn > 0) | (n_despawn > 0)
        delta_counts = np.where(
            structure, _uleb_size(n_spawn) + _uleb_size(n_despawn), 0
        ) + _uleb_size(n_update)
        full_counts = self._full_prefix + _uleb_size(n_spawn)
        size = 2 + np.where(has_base, delta_counts, full_counts)
        size = size + _ID_BYTES * (n_spawn + n_despawn)
        for bits in self._field_bits:
            for b in bits.tolist():
                size = size + _ceil8(n_spawn * b)
        updates = _ceil8(n_common)
        if len(self._field_bits) > 1:
            updates = updates + len(self._field_bits) * _ceil8(n_update)
        for changed, width in zip(n_changed, widths, strict=True):
            # Column by column: broadcasting (m, 1) against (m, k) is numpy's slow loop.
            values = np.zeros(len(changed), dtype=np.int64)
            for k in range(width.shape[1]):
                values += 1 + _ceil8(changed * width[:, k])
            updates = updates + np.where(changed > 0, values, 0)
        return size + np.where(n_update > 0, updates, 0)

    def _decide(
        self,
        tick: _Tick,
        starts: Sequence[Snapshot],
        plan_b: np.ndarray,
        cap: np.ndarray,
        budget: int,
        in_flight: np.ndarray | None,
        limit: np.ndarray,
    ) -> _Decision:
        """Which candidates each client takes when building on ``starts`` (L, or B in plan B).

        Candidates are the relevant entities new to the start or changed since. For every
        prefix of a client's candidates in priority order the payload size follows from
        running counts (rows, rows also in the base, updated rows, per-field changed rows) and
        running maxima of the deltas; a client takes the longest prefix that fits.
        """
        n, client = tick.n_clients, tick.client
        if in_flight is None and tick.latest is not None:  # plan A on last tick's tables
            start, held_pos = tick.latest
        else:
            start = FlatRows.of(self.schema, starts)
            start_rows = tick.rows_of(start.net_ids)
            held_pos = self._pairs.find(
                start.clients() * tick.width + start_rows, client * tick.width + tick.row
            )
        held = held_pos >= 0
        in_base = tick.base_pos >= 0
        both = held & in_base
        start_value = []
        new_or_changed = ~held
        changed_cur, changed_held, zz_cur, zz_held = [], [], [], []
        for f, bits in enumerate(self._field_bits):
            now, then = tick.current[f], tick.base_value[f]
            like = start.codes[f]
            value = _overlay(now, like, held_pos)
            start_value.append(value)
            new_or_changed |= words_differ(now, value)
            held_changed = both & words_differ(value, then)
            changed_held.append(held_changed)
            carried = np.flatnonzero(held_changed)  # only these add to the widths
            held_zz = zigzag(as_codes(value[carried], like), as_codes(then[carried], like), bits)
            zz_held.append((carried, held_zz.T))
        any_held = np.logical_or.reduce(changed_held)
        if in_flight is None:
            in_flight = held & (~in_base | any_held)

        # Nothing taken: the start's relevant rows, against the base.
        n_base = tick.base.counts
        pairs = tick.pair_starts
        n_total0 = segment_sums(held, pairs)
        n_common0 = segment_sums(both, pairs)
        n_update0 = segment_sums(any_held, pairs)
        n_changed0 = [segment_sums(c, pairs) for c in changed_held]
        top_held = [
            np.stack([segment_max(z_k, client[carried], n) for z_k in z], axis=1)
            for carried, z in zz_held
        ]
        widths0 = [bit_lengths(t) for t in top_held]
        size0 = self._size(
            n_total0, n_common0, n_update0, n_changed0, widths0, n_base, tick.has_base
        )

        # Candidates by priority, client by client (near ones first, then in flight in plan B).
        cand = np.flatnonzero(new_or_changed)
        owner = client[cand]
        tier = (tick.weight[cand] >= 1.0).astype(np.int64) << 1
        tier |= plan_b[owner] & in_flight[cand]
        order = cand[_by_client_then_rank(owner, tier, tick.prio[cand], n)]
        owner = client[order]
        n_cand = segment_sums(new_or_changed, pairs)
        near_count = segment_sums(new_or_changed & (tick.weight >= 1.0), pairs)
        weigh = np.minimum(n_cand, np.maximum(limit, near_count + _LIMIT_SLACK))
        weighed = np.arange(len(order)) - segment_starts(n_cand)[:-1][owner] < weigh[owner]
        order, owner = order[weighed], owner[weighed]
        weighed_starts = segment_starts(weigh)
        client_first = weighed_starts[:-1]
        for f, bits in enumerate(self._field_bits):  # the weighed candidates' current values
            now, then = tick.current[f][order], tick.base_value[f][order]
            like = tick.base.codes[f]
            changed_cur.append(words_differ(now, then))  # False where not in the base
            zz = zigzag(as_codes(now, like), as_codes(then, like), bits)
            zz_cur.append(np.ascontiguousarray(zz.T))  # component-major: 1-D rows
        any_cur = np.logical_or.reduce(changed_cur)
        new = ~held[order]
        in_base_o = in_base[order]
        # Per candidate, what taking it adds to each count; one running sum per client.
        steps = np.empty((3 + len(self._field_bits), len(order)), dtype=np.int32)
        steps[0] = new
        steps[1] = new & in_base_o
        steps[2] = (in_base_o & any_cur).astype(np.int32) - any_held[order]
        for f in range(len(self._field_bits)):
            steps[3 + f] = changed_cur[f].astype(np.int32) - changed_held[f][order]
        sums = _running(steps, owner, client_first)
        n_total = n_total0[owner] + sums[0]
        n_common = n_common0[owner] + sums[1]
        n_update = n_update0[owner] + sums[2]
        n_changed = [c0[owner] + sums[3 + f] for f, c0 in enumerate(n_changed0)]
        widths = []
        offset = owner * _OWNER_SPAN
        for z, top in zip(zz_cur, top_held, strict=True):
            width = np.empty((len(z), len(order)), dtype=np.int64)  # component-major
            for k, z_k in enumerate(z):
                most = np.maximum.accumulate(z_k + offset) - offset
                width[k] = bit_lengths(np.maximum(most, top[owner, k]))
            widths.append(width.T)  # (candidates, k): its columns are contiguous
        size = self._size(
            n_total, n_common, n_update, n_changed, widths, n_base[owner], tick.has_base[owner]
        )
        over = np.flatnonzero((size > budget) | (size - size0[owner] > cap[owner]))
        # Each client takes its candidates up to the first that does not fit.
        first_over = np.append(over, len(order))[np.searchsorted(over, client_first)]
        take = np.minimum(first_over, weighed_starts[1:]) - client_first
        position = np.arange(len(order)) - client_first[owner]
        chosen = np.zeros(len(client), dtype=bool)
        chosen[order[position < take[owner]]] = True
        return _Decision(
            held_pos,
            tuple(start_value),
            in_flight,
            chosen,
            n_cand,
            take,
            size0 <= budget,
            take < near_count,
            start.counts - n_total0,
        )

    def _emit(
        self,
        clients: Sequence[InterestBaseline],
        current: Snapshot,
        tick: _Tick,
        decision: _Decision,
        plan_b: np.ndarray,
        helds: Sequence[Snapshot],
        bases: Sequence[Snapshot | None],
        budget: int,
    ) -> list[EncodedSnapshot]:
        """Compose every client's new state, encode all payloads at once, record the sends."""
        client = tick.client
        resort = ~decision.fits  # last resort: repeat the acked state; nothing lost, all waits
        chosen = decision.chosen & ~resort[client]
        present = ((decision.held_pos >= 0) | chosen) & ~resort[client]
        values = tuple(
            as_codes(_choose(chosen, now, held)[present], like)
            for now, held, like in zip(
                tick.current, decision.start_value, current.codes, strict=True
            )
        )
        ids = tick.ids[present]
        for array in (ids, *values):
            array.flags.writeable = False
        counts = segment_sums(present, tick.pair_starts)
        raw = encode_flat(
            self.schema,
            FlatRows(counts, ids, values),
            tick.base,
            tick.has_base,
            tick.base_pos[present],
        )
        prio = tick.prio
        prio[chosen] = 0.0  # sent: its priority starts again from nothing
        row_starts = segment_starts(counts).tolist()
        pair_starts = tick.pair_starts.tolist()
        takes = decision.take.tolist()
        sent_ids = tick.ids[chosen]  # grouped by client: sliced below
        sent_starts = segment_starts(segment_sums(chosen, tick.pair_starts)).tolist()
        resorts, plan_bs = resort.tolist(), plan_b.tolist()
        candidates, despawned = decision.candidates.tolist(), decision.despawned.tolist()
        out = []
        composites = []
        self.stats = []
        for c, baseline in enumerate(clients):
            lo, hi = row_starts[c], row_starts[c + 1]
            composite = Snapshot(
                current.id, current.tick, ids[lo:hi], tuple(v[lo:hi] for v in values)
            )
            payload, compressed = raw[c], False
            if self.compress and not resorts[c]:
                payload, compressed = compress_payload(payload)
            if resorts[c] or len(payload) > budget:
                if not resorts[c]:  # the planned size is an upper bound: this is a bug
                    logger.error("planned payload over budget (%d > %d)", len(payload), budget)
                    self.overshoots += 1
                    resorts[c] = True
                held = helds[c]
                composite = Snapshot(current.id, current.tick, held.net_ids, held.codes)
                payload, compressed = encode_payload(
                    self.schema, composite, bases[c], compress=False
                )
            baseline.record(composite)
            composites.append(composite)
            baseline._took = takes[c]
            plo, phi = pair_starts[c], pair_starts[c + 1]
            baseline._prio_ids, baseline._prio = tick.ids[plo:phi], prio[plo:phi]
            sent = sent_ids[sent_starts[c] : sent_starts[c + 1]] if not resorts[c] else sent_ids[:0]
            stats = TickStats(
                sent,
                candidates[c] - len(sent),
                despawned[c],
                3 if resorts[c] else 2 if plan_bs[c] else 1,
                len(payload),
                plan_bs[c] or resorts[c],
            )
            self.stats.append(stats)
            base = bases[c]
            out.append(
                EncodedSnapshot(
                    current.id,
                    current.tick,
                    base.id if base is not None else None,
                    compressed,
                    payload,
                )
            )
        self.last = self.stats[-1]
        if not any(resorts):  # every composite is made of this tick's pairs
            self._last = _LastTick(
                tuple(clients),
                composites,
                client,
                tick.ids,
                prio,
                FlatRows(counts, ids, values),
                np.where(present, np.cumsum(present) - 1, -1),
            )
        return out
