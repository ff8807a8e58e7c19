"""Client-side prediction history, reconciliation math and correction smoothing.

Operations:

* :class:`PredictionHistory` — a bounded, seq-ordered ring of ``(seq, command, predicted
  state)`` for the local player: ``record`` after predicting one input, ``state_at(seq)`` to
  compare with the server, ``acknowledge(seq)`` to drop what the server has applied,
  ``pending()`` for the inputs still to replay, ``restate`` while replaying.
* :func:`compare_prediction` — the reconciliation decision for one snapshot: the error between
  the server's state of the local avatar after ``last_input_seq`` and what we predicted for that
  seq, and whether to rewind and replay.
* :class:`StateLayout` / :func:`read_rows` / :func:`write_row` — a flat float64 view of an
  entity's replicated fields (every column of the schema side by side), the "state" the
  history stores and the layout the render view and ``SnapshotBuffer`` use.
* :class:`CorrectionSmoother` — visual smoothing: when a correction moves the predicted avatar,
  the displayed avatar keeps its old place plus an offset that decays linearly to zero over
  ``decay_ms``, so corrections glide instead of snapping.

Determinism contract (docs/client.md): the client predicts from the *dequantized* server state
with the game's own ``apply_input``; a game whose step snaps to the replication grid (the dots
example) then predicts bit-exactly, and the error at reconciliation is exactly 0.0.

Goals: pure (no clock reads, no I/O, no esper); no per-entity loop (one entity's state is a
small vector; the render layout is built with one ``np.hstack`` over columns).
Limits: ``MAX_PREDICTED_INPUTS`` unacknowledged inputs (older ones are forgotten and counted in
``PredictionHistory.overflowed``); angle fields are smoothed linearly (exclude them from the
smoother's fields if they may wrap).
Benchmark: benchmarks/netcode_feel.py (end to end, per RTT).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from astranet.ecs.schema import Schema
from astranet.ecs.store import ColumnStore
from astranet.errors import AstranetError

__all__ = [
    "DEFAULT_SMOOTHING_MS",
    "MAX_PREDICTED_INPUTS",
    "CorrectionSmoother",
    "PredictedInput",
    "PredictionError",
    "PredictionHistory",
    "Reconciliation",
    "StateLayout",
    "compare_prediction",
    "read_rows",
    "row_of",
    "write_row",
]

# 256 inputs = 8.5 s at 30 Hz: far beyond any RTT a playable game has (the server's own input
# queue holds 8), yet a fixed bound if acks stop coming.
MAX_PREDICTED_INPUTS = 256
# 100 ms: three 30 Hz frames, long enough that a correction reads as motion, short enough that
# the displayed avatar never lags the true one noticeably.
DEFAULT_SMOOTHING_MS = 100.0


class PredictionError(AstranetError, ValueError):
    """Misuse of the prediction history: seqs out of order, or a state of the wrong shape."""


@dataclass(frozen=True, slots=True)
class StateLayout:
    """Where each replicated field sits in a flat float64 state row.

    ``slices[name]`` selects the field's columns; ``width`` is the total column count.
    """

    names: tuple[str, ...]
    slices: dict[str, slice]
    width: int

    @classmethod
    def of(cls, schema: Schema) -> StateLayout:
        slices: dict[str, slice] = {}
        start = 0
        for field in schema.fields:
            size = int(np.prod(field.encoding.column_shape(1)[1:], dtype=np.int64))
            slices[field.name] = slice(start, start + size)
            start += size
        return cls(tuple(slices), slices, start)

    def mask(self, names: Sequence[str] | None) -> npt.NDArray[np.bool_]:
        """Boolean column mask of ``names`` (all columns when None)."""
        keep = np.zeros(self.width, dtype=bool)
        for name in self.names if names is None else names:
            if name not in self.slices:
                raise PredictionError(f"unknown field {name!r}; fields: {', '.join(self.names)}")
            keep[self.slices[name]] = True
        return keep


def read_rows(store: ColumnStore, rows: npt.ArrayLike | slice = slice(None)) -> np.ndarray:
    """The given rows of every column side by side, as float64 of shape (n, layout.width)."""
    parts = [np.asarray(column[rows], dtype=np.float64) for column in store.columns()]
    if not parts:
        return np.zeros((0, 0))
    count = parts[0].shape[0]
    # Explicit widths: reshape(count, -1) cannot infer them when there are no rows.
    return np.hstack(
        [part.reshape(count, int(np.prod(part.shape[1:], dtype=np.int64))) for part in parts]
    )


def write_row(store: ColumnStore, net_id: int, state: np.ndarray) -> None:
    """Write one entity's flat ``state`` back into its columns (the inverse of read_rows)."""
    columns = store.columns()
    sizes = [int(np.prod(column.shape[1:], dtype=np.int64)) for column in columns]
    if sum(sizes) != state.shape[0]:  # checked first: a wrong width must not write half a row
        raise PredictionError(f"state has {state.shape[0]} columns, the store {sum(sizes)}")
    row = int(store.rows([net_id])[0])
    start = 0
    for column, size in zip(columns, sizes, strict=True):
        values = state[start : start + size]
        column[row] = values.reshape(column.shape[1:]) if column.ndim > 1 else values[0]
        start += size


def row_of(net_ids: np.ndarray, values: np.ndarray, net_id: int) -> np.ndarray | None:
    """``values``' row for ``net_id`` in ascending ``net_ids`` (None if it is not there)."""
    index = int(np.searchsorted(net_ids, net_id))
    if index < net_ids.shape[0] and int(net_ids[index]) == net_id:
        return values[index]
    return None


@dataclass(frozen=True, slots=True)
class PredictedInput:
    """One predicted input: its wire ``seq``, the decoded command, the state right after it."""

    seq: int
    command: Any
    state: np.ndarray


class PredictionHistory:
    """The local player's unacknowledged inputs, oldest first (see the module docstring)."""

    __slots__ = ("_acked", "_entries", "_seqs", "capacity", "overflowed", "width")

    def __init__(self, width: int, capacity: int = MAX_PREDICTED_INPUTS) -> None:
        if width < 1 or capacity < 1:
            raise PredictionError("PredictionHistory needs width >= 1 and capacity >= 1")
        self.width = width
        self.capacity = capacity
        self.overflowed = 0  # inputs forgotten before the server acknowledged them
        self._seqs: list[int] = []  # ascending, parallel to _entries (bisect needs a list)
        self._entries: list[PredictedInput] = []
        # The newest acknowledged input: snapshots repeat last_input_seq while the server
        # waits for our next input, and each repeat must still compare against it.
        self._acked: PredictedInput | None = None

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def newest(self) -> PredictedInput | None:
        return self._entries[-1] if self._entries else None

    def record(self, seq: int, command: Any, state: np.ndarray) -> None:
        """Remember the state predicted right after input ``seq`` (seqs strictly increase)."""
        if self._seqs and seq <= self._seqs[-1]:
            raise PredictionError(f"seq {seq} is not after {self._seqs[-1]}")
        self._entries.append(PredictedInput(seq, command, self._own(state)))
        self._seqs.append(seq)
        if len(self._entries) > self.capacity:
            del self._entries[0], self._seqs[0]
            self.overflowed += 1

    def state_at(self, seq: int) -> np.ndarray | None:
        """The state predicted after ``seq``, or None if it was never recorded or is gone."""
        index = bisect.bisect_left(self._seqs, seq)
        if index < len(self._seqs) and self._seqs[index] == seq:
            return self._entries[index].state
        if self._acked is not None and self._acked.seq == seq:
            return self._acked.state
        return None

    def acknowledge(self, seq: int) -> None:
        """Forget every input up to and including ``seq``: the server has applied them."""
        cut = bisect.bisect_right(self._seqs, seq)
        if cut:
            self._acked = self._entries[cut - 1]
        del self._entries[:cut], self._seqs[:cut]

    def pending(self) -> list[PredictedInput]:
        """Inputs the server has not applied yet, oldest first (what a replay re-applies)."""
        return list(self._entries)

    def restate(self, seq: int, state: np.ndarray) -> None:
        """Replace the predicted state of ``seq`` (during a replay from corrected state)."""
        index = bisect.bisect_left(self._seqs, seq)
        if index == len(self._seqs) or self._seqs[index] != seq:
            raise PredictionError(f"seq {seq} is not in the history")
        entry = self._entries[index]
        self._entries[index] = PredictedInput(seq, entry.command, self._own(state))

    def clear(self) -> None:
        """Forget everything (after a resume the server drops inputs it had not applied)."""
        self._entries.clear()
        self._seqs.clear()
        self._acked = None

    def _own(self, state: np.ndarray) -> np.ndarray:
        copy = np.array(state, dtype=np.float64, copy=True).reshape(-1)
        if copy.shape[0] != self.width:
            raise PredictionError(f"state has {copy.shape[0]} columns, expected {self.width}")
        copy.flags.writeable = False
        return copy


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The outcome of comparing one snapshot with the prediction.

    ``error`` is the largest absolute difference over the compared columns (``inf`` when no
    prediction exists for that seq, ``nan`` when nothing was compared); ``rewind`` says whether
    to restore the server state and replay ``history.pending()``.
    """

    last_input_seq: int | None
    error: float
    rewind: bool

    @property
    def compared(self) -> bool:
        return not math.isnan(self.error)


def compare_prediction(
    history: PredictionHistory,
    last_input_seq: int | None,
    server_state: np.ndarray,
    *,
    tolerance: float = 0.0,
    columns: npt.NDArray[np.bool_] | None = None,
) -> Reconciliation:
    """Compare the server's state after ``last_input_seq`` with our prediction for it, then
    acknowledge that seq in ``history``.

    ``tolerance`` 0.0 demands bit-exact agreement (the dots contract); ``columns`` restricts
    the comparison (e.g. to fields the input moves). A seq we never predicted (inputs sent
    before a resume, or forgotten by overflow) counts as a mismatch: rewinding is always safe.
    """
    if last_input_seq is None:
        return Reconciliation(None, math.nan, False)  # the server applied none of our inputs
    predicted = history.state_at(last_input_seq)
    nothing_predicted = len(history) == 0
    history.acknowledge(last_input_seq)
    if predicted is None:
        # Nothing to compare with: adopt the server state (a fresh start, e.g. after a resume),
        # or, if inputs are pending, the seq was never predicted (overflow): rewind, it is safe.
        return Reconciliation(last_input_seq, math.nan if nothing_predicted else math.inf, True)
    server = np.asarray(server_state, dtype=np.float64).reshape(-1)
    difference = np.abs(server - predicted)
    if columns is not None:
        difference = difference[columns]
    error = float(difference.max()) if difference.size else 0.0
    return Reconciliation(last_input_seq, error, not error <= tolerance)


class CorrectionSmoother:
    """Displayed = predicted + an offset that decays linearly to zero over ``decay_ms``.

    Times are any client clock in milliseconds. ``decay_ms`` 0 disables smoothing (snap).
    """

    __slots__ = ("_columns", "_offset", "_since_ms", "decay_ms", "width")

    def __init__(
        self,
        width: int,
        decay_ms: float = DEFAULT_SMOOTHING_MS,
        columns: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        if not (math.isfinite(decay_ms) and decay_ms >= 0):
            raise PredictionError(f"decay_ms must be >= 0, got {decay_ms!r}")
        self.width = width
        self.decay_ms = float(decay_ms)
        self._columns = np.ones(width, dtype=bool) if columns is None else columns
        self._offset = np.zeros(width)
        self._since_ms = 0.0

    def offset(self, now_ms: float) -> np.ndarray:
        """The offset to add to the predicted state at ``now_ms``."""
        if self.decay_ms == 0.0:
            return np.zeros(self.width)
        remaining = max(0.0, 1.0 - (now_ms - self._since_ms) / self.decay_ms)
        return self._offset * remaining

    def correct(self, now_ms: float, before: np.ndarray, after: np.ndarray) -> None:
        """A correction moved the prediction from ``before`` to ``after`` at ``now_ms``: keep
        showing ``before`` (plus any offset still decaying) and glide from there."""
        if self.decay_ms == 0.0:
            return
        jump = np.where(self._columns, np.asarray(before) - np.asarray(after), 0.0)
        self._offset = self.offset(now_ms) + jump
        self._since_ms = now_ms

    def magnitude(self, now_ms: float) -> float:
        """Largest absolute offset component now (0.0 once settled)."""
        return float(np.abs(self.offset(now_ms)).max(initial=0.0))
