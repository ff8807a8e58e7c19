"""PNG plots of a load-test run (matplotlib, Agg backend: no display needed).

Four figures, each one question:

* ``loadtest_tick_duration.png`` -- does the tick fit its 33 ms budget? (p50/p99 per interval)
* ``loadtest_bandwidth.png`` -- what does a client cost in downstream bytes per second?
* ``loadtest_late_ticks.png`` -- how many ticks start late, against server CPU?
* ``loadtest_rtt.png`` -- the bots' RTT and input-to-snapshot latency distributions.

The play window (every bot joined, the go signal until the first worker finished) is shaded.
Limits: one run per figure. Benchmark: none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["PLOT_NAMES", "Interval", "write_plots"]

PLOT_NAMES = (
    "loadtest_tick_duration.png",
    "loadtest_bandwidth.png",
    "loadtest_late_ticks.png",
    "loadtest_rtt.png",
)
TICK_BUDGET_MS = 1000.0 / 30.0


@dataclass(frozen=True, slots=True)
class Interval:
    """One sampling interval of the server's counters (end time relative to the start)."""

    t_s: float
    tick_ms_p50: float
    tick_ms_p99: float
    late_ticks_per_s: float
    bytes_per_client_per_s: float
    snapshot_bytes_per_client_per_s: float
    players: float
    server_cpu_percent: float | None


def write_plots(
    out: Path,
    intervals: Sequence[Interval],
    window: tuple[float, float] | None,
    rtt_ms: Sequence[float],
    input_to_snapshot_ms: Sequence[float],
    title: str,
) -> list[Path]:
    """Write the four PNGs into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    t = np.array([i.t_s for i in intervals], dtype=np.float64)
    paths = [out / name for name in PLOT_NAMES]

    fig, ax = _figure(title, "tick duration (ms)", window)
    ax.plot(t, [i.tick_ms_p50 for i in intervals], label="p50 per interval")
    ax.plot(t, [i.tick_ms_p99 for i in intervals], label="p99 per interval")
    ax.axhline(TICK_BUDGET_MS, color="red", linestyle="--", label="30 Hz budget")
    _save(fig, ax, paths[0])

    fig, ax = _figure(title, "bytes / s per client", window)
    ax.plot(t, [i.bytes_per_client_per_s for i in intervals], label="all bytes sent")
    ax.plot(t, [i.snapshot_bytes_per_client_per_s for i in intervals], label="snapshot payload")
    _save(fig, ax, paths[1])

    fig, ax = _figure(title, "late ticks / s", window)
    ax.plot(t, [i.late_ticks_per_s for i in intervals], color="tab:red", label="late ticks / s")
    cpu = [i.server_cpu_percent for i in intervals]
    if any(c is not None for c in cpu):
        twin = ax.twinx()
        twin.plot(
            t, [np.nan if c is None else c for c in cpu], color="tab:gray", label="server CPU %"
        )
        twin.set_ylabel("server CPU (% of one core)")
        twin.legend(loc="upper right")
    _save(fig, ax, paths[2], legend_loc="upper left")

    fig, ax = plt.subplots(figsize=(8, 4.5))
    fig.suptitle(title)
    for values, label in (
        (rtt_ms, "RTT (smoothed, 1/s per bot)"),
        (input_to_snapshot_ms, "input -> snapshot"),
    ):
        if len(values):
            ax.hist(values, bins=50, alpha=0.6, label=label)
    ax.set_xlabel("milliseconds")
    ax.set_ylabel("samples")
    _save(fig, ax, paths[3])
    return paths


def _figure(title: str, ylabel: str, window: tuple[float, float] | None) -> tuple:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    fig.suptitle(title)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel(ylabel)
    if window is not None:
        ax.axvspan(window[0], window[1], color="tab:green", alpha=0.1, label="play window")
    return fig, ax


def _save(fig: plt.Figure, ax: plt.Axes, path: Path, legend_loc: str = "best") -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc=legend_loc)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
