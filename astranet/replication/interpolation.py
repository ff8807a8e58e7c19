"""Snapshot interpolation for remote entities: a ring of snapshots sampled at render time.

Operations: ``SnapshotBuffer.push(server_time_ms, net_ids, values)`` per received snapshot;
``SnapshotBuffer.sample(render_time_ms)`` gives every entity's interpolated values at that
server time; ``InterpolationDelay`` says how far behind the server clock to render so that two
snapshots normally bracket the render time despite network jitter.

Goals: no per-entity Python loop (ids are matched with ``np.intersect1d`` on sorted ids, values
blended as whole arrays); pure (the caller passes server times, see ``astranet.net.clock``).

Sampling rules (``render_time_ms`` = r, buffered snapshot times t0 < t1 < ... < tN):

* t0 <= r <= tN: the snapshots a, b with ta <= r <= tb are blended with
  ``alpha = (r - ta) / (tb - ta)`` as ``(1 - alpha) * a + alpha * b`` (exact at 0, 0.5 and 1).
  The output entity set is the newer snapshot's (b), the set the server last vouched for:
  an entity only in b (spawned) is shown at b's values, an entity only in a (despawned) is
  dropped. Both changes therefore show up to one snapshot interval early, never late.
* r > tN (starved: the next snapshot is late): extrapolate linearly from the last two
  snapshots for at most ``max_extrapolation_ms`` (default 100 ms: about three 30 Hz snapshot
  intervals, long enough to hide one lost/late snapshot, short enough that a wrong guess is a
  small correction), then hold the values reached at that bound. Entities only in the newest
  snapshot are held. One starvation is counted per episode, i.e. on the first sample past the
  newest snapshot after a sample that was not past it.
* r < t0: hold the oldest snapshot.
* Angle columns (``angle_columns`` mask, radians) blend along the shortest arc and blended
  rows come back wrapped into [-pi, pi) (held rows are returned as received).

Render delay (``InterpolationDelay``): ``render_time = server_now - delay``. The target delay
is ``max(2 * interval, interval + JITTER_MULTIPLIER * jitter + margin)`` where ``interval`` is
the larger of the nominal and the measured snapshot interval and ``jitter`` is RFC 3550's
inter-arrival jitter (a 1/16-gain average of |change in transit time|). The published delay
rises toward the target quickly (``DELAY_RISE_GAIN``) and falls slowly (``DELAY_FALL_GAIN``),
so a jitter burst stops starvation within a few snapshots but calm seconds are needed before
the picture gets more current again. It never goes below the default, ``2 * nominal``
interval, nor above ``MAX_INTERPOLATION_DELAY_MS``.

Limits: ``MAX_BUFFERED_SNAPSHOTS`` (32) snapshots, the oldest dropped first; a snapshot not newer
than the newest buffered one is ignored (``push`` returns False). Arithmetic is float64; the
result has the newer snapshot's dtype.
Benchmark: benchmarks/replication/bench_interpolation.py (1000 entities x 4 columns), not yet
written; an ad-hoc timeit on the 2-core dev machine gave ~42 us per ``sample`` with unchanged
ids (one angle column) and ~75 us when the pair's ids differ (``np.intersect1d``).
"""

from __future__ import annotations

import bisect
import enum
import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from astranet.errors import AstranetError

__all__ = [
    "DEFAULT_DELAY_MARGIN_MS",
    "DEFAULT_MAX_EXTRAPOLATION_MS",
    "MAX_BUFFERED_SNAPSHOTS",
    "MAX_INTERPOLATION_DELAY_MS",
    "InterpolationDelay",
    "InterpolationResult",
    "InterpolationStatus",
    "InvalidSnapshotError",
    "SnapshotBuffer",
]

# One second of 30 Hz snapshots: far more than any sane render delay needs (2-6 intervals),
# while bounding memory to 32 x (n x k) values.
MAX_BUFFERED_SNAPSHOTS = 32
DEFAULT_MAX_EXTRAPOLATION_MS = 100.0
_TWO_PI = 2.0 * math.pi

# Render no more than half a second behind: beyond that the game is unplayable anyway and a
# bigger delay would only hide a dead link.
MAX_INTERPOLATION_DELAY_MS = 500.0
# A few ms of slack for timer granularity and decode time on the client.
DEFAULT_DELAY_MARGIN_MS = 5.0
JITTER_MULTIPLIER = 2.0
# RFC 3550 section 6.4.1 jitter gain; the interval uses the same memory.
JITTER_GAIN = 1.0 / 16.0
DELAY_RISE_GAIN = 0.25  # ~4 snapshots to follow a jitter increase
DELAY_FALL_GAIN = 0.02  # ~50 snapshots (1.7 s at 30 Hz) to relax after it


# Row selector of the entities two snapshots share: index arrays, or slice(None) for "all".
_Rows = np.ndarray | slice


class InvalidSnapshotError(AstranetError, ValueError):
    """Arrays handed to ``SnapshotBuffer.push`` have the wrong shape, dtype or id order."""


class InterpolationStatus(enum.Enum):
    EMPTY = "empty"  # nothing buffered yet: the result has no entities
    INTERPOLATING = "interpolating"  # render time within the buffer
    EXTRAPOLATING = "extrapolating"  # past the newest snapshot, within max_extrapolation_ms
    HOLDING_NEWEST = "holding_newest"  # past the newest snapshot by more than that: held
    HOLDING_OLDEST = "holding_oldest"  # before the oldest snapshot: held


@dataclass(frozen=True, slots=True)
class InterpolationResult:
    """Values of every shown entity at one render time. ``net_ids`` ascending."""

    net_ids: npt.NDArray[np.uint32]
    values: npt.NDArray[np.floating]
    status: InterpolationStatus


@dataclass(frozen=True, slots=True)
class _Snapshot:
    server_time_ms: float
    net_ids: npt.NDArray[np.uint32]  # sorted ascending, unique
    values: npt.NDArray[np.floating]  # shape (n, width)


class SnapshotBuffer:
    """A bounded ring of snapshots of ``width`` float columns per entity."""

    __slots__ = (
        "_angle_columns",
        "_pair_cache",
        "_snapshots",
        "_starving",
        "_times",
        "max_extrapolation_ms",
        "starvations",
        "width",
    )

    def __init__(
        self,
        width: int,
        *,
        capacity: int = MAX_BUFFERED_SNAPSHOTS,
        max_extrapolation_ms: float = DEFAULT_MAX_EXTRAPOLATION_MS,
        angle_columns: npt.ArrayLike | None = None,
    ) -> None:
        if width < 1 or capacity < 2:
            raise InvalidSnapshotError("SnapshotBuffer needs width >= 1 and capacity >= 2")
        if not (max_extrapolation_ms >= 0):
            raise InvalidSnapshotError("max_extrapolation_ms must be >= 0")
        self.width = width
        self.max_extrapolation_ms = float(max_extrapolation_ms)
        mask = np.zeros(width, dtype=bool) if angle_columns is None else np.asarray(angle_columns)
        if mask.dtype != np.bool_ or mask.shape != (width,):
            raise InvalidSnapshotError(f"angle_columns must be a bool mask of shape ({width},)")
        self._angle_columns = np.flatnonzero(mask)
        self._snapshots: deque[_Snapshot] = deque(maxlen=capacity)
        self._times: deque[float] = deque(maxlen=capacity)  # parallel to _snapshots
        self._pair_cache: tuple[_Snapshot, _Snapshot, _Rows, _Rows] | None
        self._pair_cache = None
        self._starving = False
        self.starvations = 0

    def __len__(self) -> int:
        return len(self._snapshots)

    @property
    def newest_time_ms(self) -> float | None:
        return self._times[-1] if self._times else None

    def push(self, server_time_ms: float, net_ids: npt.ArrayLike, values: npt.ArrayLike) -> bool:
        """Buffer one snapshot. Return False (ignored) if it is not newer than the newest.

        Raises InvalidSnapshotError if ids are not a 1-D uint32 array sorted strictly
        ascending, or values are not a finite float array of shape (len(ids), width).
        """
        ids = np.asarray(net_ids)
        vals = np.asarray(values)
        if ids.ndim != 1 or ids.dtype != np.uint32:
            raise InvalidSnapshotError("net_ids must be a 1-D uint32 array")
        if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            raise InvalidSnapshotError("net_ids must be sorted strictly ascending")
        if vals.dtype not in (np.float32, np.float64) or vals.shape != (ids.size, self.width):
            raise InvalidSnapshotError(
                f"values must be float32/float64 of shape ({ids.size}, {self.width}),"
                f" got {vals.dtype} {vals.shape}"
            )
        if not math.isfinite(server_time_ms) or not bool(np.all(np.isfinite(vals))):
            raise InvalidSnapshotError("server_time_ms and values must be finite")
        if self._times and server_time_ms <= self._times[-1]:
            return False
        # Own copies: the caller may reuse its decode buffers.
        snapshot = _Snapshot(float(server_time_ms), ids.copy(), vals.copy())
        self._snapshots.append(snapshot)
        self._times.append(snapshot.server_time_ms)
        return True

    def clear(self) -> None:
        """Forget every snapshot (e.g. after a reconnect: the next snapshot is full)."""
        self._snapshots.clear()
        self._times.clear()
        self._pair_cache = None
        self._starving = False

    def sample(self, render_time_ms: float) -> InterpolationResult:
        """Values of the entities at server time ``render_time_ms`` (see the module rules)."""
        if not self._snapshots:
            return InterpolationResult(
                np.empty(0, np.uint32), np.empty((0, self.width)), InterpolationStatus.EMPTY
            )
        newest = self._snapshots[-1]
        if render_time_ms > newest.server_time_ms:
            if not self._starving:
                self.starvations += 1
            self._starving = True
            return self._extrapolate(render_time_ms)
        self._starving = False
        oldest = self._snapshots[0]
        if render_time_ms < oldest.server_time_ms:
            return _held(oldest, InterpolationStatus.HOLDING_OLDEST)
        if len(self._snapshots) == 1:
            return _held(newest, InterpolationStatus.INTERPOLATING)
        # Index of the last snapshot at or before render time, kept so that a pair exists.
        older_index = min(bisect.bisect_right(self._times, render_time_ms) - 1, len(self) - 2)
        older = self._snapshots[older_index]
        newer = self._snapshots[older_index + 1]
        alpha = (render_time_ms - older.server_time_ms) / (
            newer.server_time_ms - older.server_time_ms
        )
        return InterpolationResult(
            newer.net_ids, self._blend(older, newer, alpha), InterpolationStatus.INTERPOLATING
        )

    def _extrapolate(self, render_time_ms: float) -> InterpolationResult:
        newest = self._snapshots[-1]
        if len(self._snapshots) == 1:
            return _held(newest, InterpolationStatus.HOLDING_NEWEST)
        previous = self._snapshots[-2]
        ahead_ms = render_time_ms - newest.server_time_ms
        status = InterpolationStatus.EXTRAPOLATING
        if ahead_ms > self.max_extrapolation_ms:
            ahead_ms = self.max_extrapolation_ms
            status = InterpolationStatus.HOLDING_NEWEST
        interval_ms = newest.server_time_ms - previous.server_time_ms
        alpha = 1.0 + ahead_ms / interval_ms
        return InterpolationResult(newest.net_ids, self._blend(previous, newest, alpha), status)

    def _blend(self, older: _Snapshot, newer: _Snapshot, alpha: float) -> np.ndarray:
        """``newer``'s rows, with rows of entities also in ``older`` blended at ``alpha``."""
        in_older, in_newer = self._match(older, newer)
        start = older.values[in_older].astype(np.float64)
        end = newer.values[in_newer].astype(np.float64)
        angles = self._angle_columns  # column indices; only these pay for the wrapping
        if angles.size:
            # Shortest arc: unwrap the end so that |end - start| <= pi on angle columns.
            turn = np.remainder(end[:, angles] - start[:, angles] + math.pi, _TWO_PI) - math.pi
            end[:, angles] = start[:, angles] + turn
        blended = (1.0 - alpha) * start + alpha * end
        if angles.size:
            blended[:, angles] = np.remainder(blended[:, angles] + math.pi, _TWO_PI) - math.pi
        out = newer.values.copy()  # rows only in newer keep newer's values
        out[in_newer] = blended
        return out

    def _match(self, older: _Snapshot, newer: _Snapshot) -> tuple[_Rows, _Rows]:
        """Row indices of the entities present in both, cached per pair (render runs many
        frames between two snapshots)."""
        cache = self._pair_cache
        if cache is not None and cache[0] is older and cache[1] is newer:
            return cache[2], cache[3]
        if np.array_equal(older.net_ids, newer.net_ids):
            # The common case (no spawn or despawn): whole arrays, no gather.
            in_older = in_newer = slice(None)
        else:
            _, in_older, in_newer = np.intersect1d(
                older.net_ids, newer.net_ids, assume_unique=True, return_indices=True
            )
        self._pair_cache = (older, newer, in_older, in_newer)
        return in_older, in_newer


def _held(snapshot: _Snapshot, status: InterpolationStatus) -> InterpolationResult:
    return InterpolationResult(snapshot.net_ids, snapshot.values.copy(), status)


class InterpolationDelay:
    """Adaptive render delay from snapshot arrival times (see the module docstring)."""

    __slots__ = (
        "_delay_ms",
        "_jitter_ms",
        "_last_arrival",
        "_measured_interval_ms",
        "margin_ms",
        "max_delay_ms",
        "nominal_interval_ms",
    )

    def __init__(
        self,
        nominal_interval_ms: float,
        *,
        margin_ms: float = DEFAULT_DELAY_MARGIN_MS,
        max_delay_ms: float = MAX_INTERPOLATION_DELAY_MS,
    ) -> None:
        if not (nominal_interval_ms > 0 and 2 * nominal_interval_ms <= max_delay_ms):
            raise InvalidSnapshotError(
                "need 0 < nominal_interval_ms and 2 * nominal_interval_ms <= max_delay_ms"
            )
        if not margin_ms >= 0:
            raise InvalidSnapshotError("margin_ms must be >= 0")
        self.nominal_interval_ms = float(nominal_interval_ms)
        self.margin_ms = float(margin_ms)
        self.max_delay_ms = float(max_delay_ms)
        self._delay_ms = self.default_delay_ms
        self._jitter_ms = 0.0
        self._measured_interval_ms = self.nominal_interval_ms
        self._last_arrival: tuple[float, float] | None = None  # (client ms, server ms)

    @property
    def default_delay_ms(self) -> float:
        """Two nominal snapshot intervals: the floor of the delay."""
        return 2.0 * self.nominal_interval_ms

    @property
    def delay_ms(self) -> float:
        return self._delay_ms

    @property
    def jitter_ms(self) -> float:
        """RFC 3550 inter-arrival jitter estimate (ms)."""
        return self._jitter_ms

    @property
    def interval_ms(self) -> float:
        """Measured snapshot interval (server time between snapshots), smoothed."""
        return self._measured_interval_ms

    def render_time_ms(self, server_now_ms: float) -> float:
        """The server time to sample the snapshot buffer at."""
        return server_now_ms - self._delay_ms

    def on_snapshot_arrival(self, client_time_ms: float, server_time_ms: float) -> float:
        """Record that the snapshot stamped ``server_time_ms`` arrived at ``client_time_ms``
        (any client clock; a constant offset cancels out). Return the new delay.

        Arrivals that are not newer on the server's timeline, or not finite, are ignored.
        """
        if not (math.isfinite(client_time_ms) and math.isfinite(server_time_ms)):
            return self._delay_ms
        last = self._last_arrival
        if last is not None and server_time_ms <= last[1]:
            return self._delay_ms
        self._last_arrival = (client_time_ms, server_time_ms)
        if last is None:
            return self._delay_ms
        server_gap_ms = server_time_ms - last[1]
        transit_change_ms = (client_time_ms - last[0]) - server_gap_ms
        self._jitter_ms += JITTER_GAIN * (abs(transit_change_ms) - self._jitter_ms)
        self._measured_interval_ms += JITTER_GAIN * (server_gap_ms - self._measured_interval_ms)
        interval = max(self.nominal_interval_ms, self._measured_interval_ms)
        target = max(
            self.default_delay_ms,
            2.0 * interval,
            interval + JITTER_MULTIPLIER * self._jitter_ms + self.margin_ms,
        )
        target = min(target, self.max_delay_ms)
        gain = DELAY_RISE_GAIN if target > self._delay_ms else DELAY_FALL_GAIN
        smoothed = self._delay_ms + gain * (target - self._delay_ms)
        # Rounding must not sneak below the floor the docstring promises.
        self._delay_ms = max(self.default_delay_ms, smoothed)
        return self._delay_ms
