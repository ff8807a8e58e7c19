"""Interest management under a byte budget: what each client gets of a snapshot, and when.

Three parts:

* :class:`Relevance` -- what a game's ``Game.relevance`` hook returns for one client: the rows
  of the room's store that client may see, each with a priority weight (> 0; larger = more
  important, e.g. near the avatar). :class:`SpatialGrid` is the helper for the common case
  (entities within a radius of the viewer, priority falling with distance).
* :class:`InterestBaseline` -- the server's per-client memory: the exact state it sent in each
  recent snapshot (a per-client *composite*, not a row selection of the room's snapshot), the
  newest acked one, and each relevant entity's accumulated priority.
* :class:`BudgetedEncoder` -- per client and tick, builds the next composite and its payload.

How a tick is decided (lightyear-style priority accumulation). ``L`` is the composite sent last
(what the client will hold once it arrives), ``B`` the newest one it acked (the delta base),
``C`` the room's snapshot now:

1. Every relevant entity's priority grows by its weight; candidates are the relevant entities
   that are new to the client (spawns) or whose codes differ from ``L`` (updates).
2. Entities in ``L`` that left relevance or no longer exist are despawned (cheap: 4 bytes).
3. Candidates are taken in priority order while the estimated payload fits the per-tick byte
   budget; a sent entity's priority drops to 0. The rest are **deferred**: they keep the value
   of ``L`` (not a despawn, and no jump back), so the client shows them as last sent and their
   next update is a correct delta from what the client holds.
4. The composite ``N`` (``L`` with those changes) is encoded against ``B`` with the ordinary
   codec; if the payload is over the budget, fewer candidates are taken and it is encoded again
   (at most MAX_ATTEMPTS times), and as a last resort ``N = B`` (a header-only payload).
   A payload therefore never exceeds the budget (``budget_bytes`` >= MIN_BUDGET_BYTES).

Nothing on the wire changes: every payload is a v1 delta against a snapshot the client acked.
Goals: per-client work is O(relevant rows) numpy calls (no per-entity Python loop); memory is
``capacity`` composites of relevant rows per client. Limits: DEFAULT_COMPOSITES kept per client
(an ack older than that gets a full payload); budgets below MIN_BUDGET_BYTES are refused.
Benchmark: benchmarks/interest.py (10,000 entities, 100 clients, 32 kB/s each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from astranet.ecs.schema import Schema
from astranet.errors import ConfigurationError
from astranet.replication.codec import HEADER_BYTES_ESTIMATE, encode_payload, payload_counts
from astranet.replication.fanout import ClientBaseline, EncodedSnapshot
from astranet.replication.snapshot import Snapshot, empty_snapshot

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
# The payload header alone is 24 bytes; below 64 a budget could not carry a single spawn.
MIN_BUDGET_BYTES = 64
MAX_ATTEMPTS = 3
# What a Snapshot message adds around its payload, at most: the map envelope is 97 bytes with
# u32 ids and a u64 tick at their widest (the compact one is smaller); reserved from a
# bytes-per-second budget so whole messages stay within it.
ENVELOPE_BYTES = 100
_AIM_UNDER = 0.03
_NEAR_BOOST = 1e9  # above in-flight and any accumulated priority
_IN_FLIGHT_BOOST = 1e6  # in plan B: after near ones, above any accumulated priority
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

    Build once per tick (``SpatialGrid(positions, cell_size)``: one argsort), then query per
    client; a query touches only the cells overlapping the circle. Choose ``cell_size`` about
    the query radius.
    """

    def __init__(self, positions: np.ndarray, cell_size: float) -> None:
        if not cell_size > 0:
            raise ConfigurationError(f"cell_size must be > 0, got {cell_size!r}")
        pos = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
        self.positions = pos
        self.cell_size = float(cell_size)
        cells = np.floor(pos / self.cell_size).astype(np.int64)
        self._origin = cells.min(axis=0) if len(cells) else np.zeros(2, np.int64)
        local = cells - self._origin
        self._width = int(local[:, 1].max()) + 1 if len(local) else 1
        keys = local[:, 0] * self._width + local[:, 1]
        self._order = np.argsort(keys, kind="stable")  # rows grouped by cell
        self._sorted_keys = keys[self._order]
        self._span = local.max(axis=0) if len(local) else np.zeros(2, np.int64)

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
        picked = self._order[np.arange(lengths.sum()) + offsets]
        offset = self.positions[picked] - c[viewer]
        dist = np.sqrt(np.einsum("ij,ij->i", offset, offset))
        inside = dist <= radius
        viewer, picked, dist = viewer[inside], picked[inside], dist[inside]
        order = np.argsort(viewer * (len(self.positions) + 1) + picked, kind="stable")
        viewer, picked, dist = viewer[order], picked[order], dist[order]
        falloff = (near_radius / np.maximum(dist, near_radius)) ** 2
        priority = np.maximum(falloff, far_priority)
        cuts = np.searchsorted(viewer, np.arange(1, n))
        return [
            Relevance(rows, weights)
            for rows, weights in zip(np.split(picked, cuts), np.split(priority, cuts), strict=True)
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

    __slots__ = ("_prio", "_prio_ids", "latest")

    def __init__(self, capacity: int = DEFAULT_COMPOSITES) -> None:
        super().__init__(capacity)
        self.latest: Snapshot | None = None  # the composite sent last
        self._prio_ids = np.zeros(0, np.uint32)  # relevant ids last tick, ascending
        self._prio = np.zeros(0)

    def reset(self) -> None:
        """Forget everything (e.g. on Resume): the next payload is full."""
        super().reset()
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

    def mark_sent(self, positions: np.ndarray) -> None:
        """The entities at ``positions`` (of this tick's relevant ids) went out: priority 0."""
        self._prio[positions] = 0.0

    def accumulate(self, ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Grow the priority of the relevant ``ids`` (ascending) by ``weights``; returns it."""
        prio = np.zeros(len(ids))
        if len(self._prio_ids):
            at = np.minimum(np.searchsorted(self._prio_ids, ids), len(self._prio_ids) - 1)
            known = self._prio_ids[at] == ids
            prio[known] = self._prio[at[known]]
        prio += weights
        self._prio_ids, self._prio = ids, prio
        return prio


@dataclass(slots=True)
class TickStats:
    """What one ``encode_for`` decided (read by benchmarks and tests)."""

    sent_ids: np.ndarray  # entities whose current value went out this tick (updates + spawns)
    deferred: int
    despawned: int
    attempts: int
    payload_bytes: int
    from_base: bool  # plan B (or the last resort): built on the acked state, not the last sent


@dataclass(frozen=True, slots=True)
class _Plan:
    despawn_ids: np.ndarray  # held ids to remove
    order: np.ndarray  # candidate positions (into the relevant ids), highest priority first
    cost: np.ndarray  # estimated bytes of each candidate, in that order
    in_start: np.ndarray  # per relevant id: already held (an update) vs new (a spawn)


def _member(ids: np.ndarray, of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``ids``: whether it is in sorted ``of``, and its index there (if so)."""
    if len(of) == 0:
        return np.zeros(len(ids), bool), np.zeros(len(ids), np.int64)
    at = np.minimum(np.searchsorted(of, ids), len(of) - 1)
    return of[at] == ids, at


class BudgetedEncoder:
    """Per-room: the next payload of each client, within its byte budget per tick."""

    def __init__(self, schema: Schema, *, compress: bool = False) -> None:
        # No LZ4 by default: bit-packed deltas rarely shrink, and the codec's own counts in
        # the raw header let the cost estimate learn from every payload.
        self.schema = schema
        self.compress = compress
        self._empty = empty_snapshot(schema)
        bits = sum(sum(f.encoding.code_bits) for f in schema.fields)
        self._spawn_bytes = _ID_BYTES + math.ceil(bits / 8)
        self._update_bytes = max(1.0, bits / 16)  # refined from real payloads as we go
        self._slack = 0.0  # learned bytes the first estimate misses by (EWMA)
        self.last: TickStats | None = None

    def encode_for(
        self,
        client: InterestBaseline,
        current: Snapshot,
        relevance: Relevance,
        budget_bytes: int,
    ) -> EncodedSnapshot:
        """This tick's payload for ``client``: at most ``budget_bytes`` bytes."""
        if budget_bytes < MIN_BUDGET_BYTES:
            raise ConfigurationError(f"budget_bytes must be >= {MIN_BUDGET_BYTES}")
        base = client.base
        held = base if base is not None else self._empty
        latest = client.latest if client.latest is not None else held
        rows = np.asarray(relevance.rows, dtype=np.int64)
        rel_ids = current.net_ids[rows]
        weights = np.asarray(relevance.priority, dtype=np.float64)
        prio = client.accumulate(rel_ids, weights)
        # Near first: weight >= 1 entities go out every tick they changed, ahead of the rest,
        # which share what is left by accumulated priority.
        prio_rank = prio + np.where(weights >= 1.0, _NEAR_BOOST, 0.0)

        attempts = 0
        # Plan A builds on the latest composite (deferred entities keep what was last sent);
        # plan B, when repeating the unacked sends alone would not fit, on the acked base.
        carried_bytes, carry_ids = self._carry(latest, base)
        for plan_b, (start, carry) in enumerate(((latest, carried_bytes), (held, 0.0))):
            rank = prio_rank
            if plan_b:
                # Re-send what is in flight first after the near ones (their current value):
                # otherwise each fallback would revert the last sends for others, and the
                # client would never converge.
                in_flight = _member(rel_ids, carry_ids)[0]
                rank = prio_rank + np.where(in_flight, _IN_FLIGHT_BOOST, 0.0)
            plan = self._plan(current, rows, rel_ids, rank, start)
            if not plan_b and len(carry_ids):
                # Already in the carried bytes: sending the current value instead is ~free.
                plan.cost[_member(rel_ids[plan.order], carry_ids)[0]] = 0.0
            fixed = HEADER_BYTES_ESTIMATE + carry + _ID_BYTES * len(plan.despawn_ids)
            cumulative = np.cumsum(plan.cost)
            # Aim a little under the budget: a re-encode costs more than 3 % of the bytes.
            margin = max(8.0, _AIM_UNDER * budget_bytes)
            room = budget_bytes - fixed - max(self._slack, 0.0) - margin
            if not plan_b and base is not None and latest is not base:
                # Whatever is added now is repeated until acked, ~in_flight more times: keep
                # each tick's additions to 1/(in_flight + 1) of the budget so the carry stays
                # inside it (else plan B reverts deferred entities every few ticks).
                in_flight = max(0, latest.id - base.id)
                room = min(room, (budget_bytes - HEADER_BYTES_ESTIMATE) / (in_flight + 1))
            take = int(np.searchsorted(cumulative, room, side="right"))
            near_first = int(np.count_nonzero(weights[plan.order] >= 1.0))
            if not plan_b and take < near_first and start is not held:
                continue  # repeating far updates in flight would starve near ones: plan B
            for attempt in range(MAX_ATTEMPTS):
                attempts += 1
                chosen = np.sort(plan.order[:take])
                composite = self._compose(current, start, rows[chosen], plan.despawn_ids)
                payload, compressed = encode_payload(
                    self.schema, composite, base, compress=self.compress
                )
                estimate = fixed + (cumulative[take - 1] if take else 0.0)
                if attempt == 0 and not plan_b:
                    # Learn how far the estimate misses (carry deltas grow with ack lag).
                    self._slack += 0.2 * (len(payload) - estimate - self._slack)
                if len(payload) <= budget_bytes or take == 0:
                    break
                # Drop the lowest-priority candidates worth the excess, with a margin.
                excess = (len(payload) - budget_bytes) * 1.25 + 2
                target = (cumulative[take - 1] if take else 0.0) - excess
                take = min(take - 1, int(np.searchsorted(cumulative, target, side="right")))
            if len(payload) <= budget_bytes:
                composite_from_base = bool(plan_b)
                break
        else:
            composite_from_base = True
            # Last resort: repeat the acked state (header only); nothing is lost, all waits.
            composite = Snapshot(current.id, current.tick, held.net_ids, held.codes)
            payload, compressed = encode_payload(self.schema, composite, base, compress=False)
            chosen = np.zeros(0, np.int64)
            plan = _Plan(np.zeros(0, np.uint32), chosen, np.zeros(0), chosen)
        self._learn(payload, compressed)
        client.record(composite)
        client.mark_sent(chosen)
        self.last = TickStats(
            rel_ids[chosen],
            len(plan.order) - len(chosen),
            len(plan.despawn_ids),
            attempts,
            len(payload),
            composite_from_base,
        )
        base_id = base.id if base is not None else None
        return EncodedSnapshot(current.id, current.tick, base_id, compressed, payload)

    def _plan(
        self,
        current: Snapshot,
        rows: np.ndarray,
        rel_ids: np.ndarray,
        prio: np.ndarray,
        start: Snapshot,
    ) -> _Plan:
        """What would change relative to ``start``: despawns, candidates in priority order."""
        held_relevant, _ = _member(start.net_ids, rel_ids)
        despawn_ids = start.net_ids[~held_relevant]  # left relevance, or gone
        in_start, at_start = _member(rel_ids, start.net_ids)
        changed = ~in_start  # new to the client: a spawn
        common = np.flatnonzero(in_start)
        for cur_codes, old_codes in zip(current.codes, start.codes, strict=True):
            differs = cur_codes[rows[common]] != old_codes[at_start[common]]
            changed[common[differs.any(axis=1)]] = True  # codes are (n, k)
        candidates = np.flatnonzero(changed)
        order = candidates[np.argsort(-prio[candidates], kind="stable")]
        cost = np.where(in_start[order], self._update_bytes, float(self._spawn_bytes))
        return _Plan(despawn_ids, order, cost, in_start)

    def _learn(self, payload: bytes, compressed: bool) -> None:
        """Refine the bytes-per-updated-row estimate (EWMA) from the payload's own counts."""
        if compressed:
            return
        n_spawn, n_despawn, n_update, header = payload_counts(self.schema, payload)
        spent = len(payload) - header - _ID_BYTES * n_despawn - self._spawn_bytes * n_spawn
        if n_update and spent > 0:
            self._update_bytes += 0.2 * (spent / n_update - self._update_bytes)

    def _carry(self, latest: Snapshot, base: Snapshot | None) -> tuple[float, np.ndarray]:
        """What ``latest`` holds beyond the acked base: estimated bytes to repeat it, and the
        ids concerned (sorted). Re-sending one of those fresh costs about nothing more."""
        if base is None:
            return float(len(latest)) * self._spawn_bytes, latest.net_ids
        if latest is base:
            return 0.0, latest.net_ids[:0]
        in_base, at = _member(latest.net_ids, base.net_ids)
        differs = ~in_base
        idx = np.flatnonzero(in_base)
        for new, old in zip(latest.codes, base.codes, strict=True):
            d = new[idx] != old[at[idx]]
            differs[idx[d.any(axis=1)]] = True
        spawns = int((~in_base).sum())
        updates = int(differs.sum()) - spawns
        return spawns * self._spawn_bytes + updates * self._update_bytes, latest.net_ids[differs]

    def _compose(
        self,
        current: Snapshot,
        latest: Snapshot,
        chosen_rows: np.ndarray,
        despawn_ids: np.ndarray,
    ) -> Snapshot:
        """``latest`` minus ``despawn_ids``, with the chosen rows of ``current`` written in."""
        keep = ~_member(latest.net_ids, despawn_ids)[0]
        kept_ids = latest.net_ids[keep]
        chosen_ids = current.net_ids[chosen_rows]
        in_kept, at_in_kept = _member(chosen_ids, kept_ids)
        if in_kept.all():  # only updates (the common case): the id set is the kept one
            ids = kept_ids
            at_kept = slice(None)
            at_chosen = at_in_kept
        else:
            ids = np.union1d(kept_ids, chosen_ids).astype(np.uint32)
            at_kept = np.searchsorted(ids, kept_ids)
            at_chosen = np.searchsorted(ids, chosen_ids)
        codes = []
        for cur, old in zip(current.codes, latest.codes, strict=True):
            out = np.empty((len(ids), *cur.shape[1:]), dtype=cur.dtype)
            out[at_kept] = old[keep]
            out[at_chosen] = cur[chosen_rows]
            out.flags.writeable = False
            codes.append(out)
        ids.flags.writeable = False
        return Snapshot(current.id, current.tick, ids, tuple(codes))
