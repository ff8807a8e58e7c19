"""``astranet-loadtest``: a co-op server under R rooms x 4 bots, measured.

Usage::

    astranet-loadtest [--rooms 25] [--duration 30] [--workers 0] [--fps 30] [--seed 0] [--lite]
                      [--url ws://HOST:PORT --http-url http://HOST:PORT] [--region us-east]
                      [--out loadtest-out] [--interval 1.0] [--json]

Without ``--url`` it starts ``python -m astranet.server --game GAME (default the co-op game)
--ws-port 0
--http-port 0 --db <tmp>`` (:class:`~astranet.tools.serverproc.ServerProcess`) and also samples
its CPU from ``/proc``; with ``--url`` and ``--http-url`` it drives that server instead (no CPU
figure). The bots are :mod:`astranet.tools.fleet`. A sampler thread scrapes ``/metrics`` every
``--interval`` seconds for the plots; the figures in the summary are over the *play window*
(from the moment every bot joined to the end of ``--duration``), from a scrape at each end.

Live progress goes to stderr (rich). At the end: a summary table (stderr), four PNGs and
``summary.json`` in ``--out``, and with ``--json`` one JSON object on stdout with at least
``clients``, ``late_tick_fraction``, ``tick_ms_p99``, ``snapshot_bytes_per_client_per_s``,
``input_to_snapshot_ms_p99``, ``disconnects`` and ``kicks`` (docs/loadtest.md lists them all).
Exit status: 0 ran (whatever it measured); 2 the server could not be started or reached;
64 bad flags; 130 interrupted (Ctrl-C: the server and the bots are stopped, no traceback).
Limits: the tick percentiles are as fine as the histogram buckets; ``MAX_INTERVALS`` samples.
Benchmark: this is one; results in docs/benchmarks.md, "Load test (co-op bots)".
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from astranet.errors import AstranetError
from astranet.tools.bots import add_fleet_arguments, fleet_config, summarise
from astranet.tools.fleet import FleetResult, run_fleet
from astranet.tools.plots import Interval, write_plots
from astranet.tools.serverproc import (
    MetricsSample,
    MetricsUnavailable,
    ServerProcess,
    cpu_seconds,
    histogram_quantile,
    scrape,
)

__all__ = ["MAX_INTERVALS", "LoadTest", "main"]

EXIT_OK, EXIT_SERVER, EXIT_USAGE = 0, 2, 64
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C
MAX_INTERVALS = 7200  # two hours of 1 s samples
SCRAPE_JOIN_S = 15.0  # the sampler may be inside one scrape (SCRAPE_TIMEOUT_S) when stopped


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else seconds * 1000.0


class LoadTest:
    """One run: sampler thread + fleet + window scrapes; :meth:`summary` after :meth:`run`."""

    def __init__(
        self, http_url: str, server_pid: int | None, interval_s: float, console: Console
    ) -> None:
        self.http_url = http_url
        self.server_pid = server_pid
        self.interval_s = interval_s
        self.console = console
        self.started = time.monotonic()
        self.intervals: deque[Interval] = deque(maxlen=MAX_INTERVALS)
        self.window: tuple[float, float] | None = None
        self._edges: list[tuple[float, MetricsSample, float | None]] = []
        self._stop = threading.Event()
        self._last: tuple[float, MetricsSample, float | None] | None = None
        self.progress: dict[int, dict[str, Any]] = {}
        self.phase = "joining"
        self.scrape_failures = 0

    # -- sampling ----------------------------------------------------------------------------

    def _cpu(self) -> float | None:
        if self.server_pid is None:
            return None
        try:
            return cpu_seconds(self.server_pid)
        except OSError:  # the server exited
            return None

    def _sample(self) -> tuple[float, MetricsSample, float | None]:
        return time.monotonic(), scrape(self.http_url), self._cpu()

    def _sampler(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                point = self._sample()
            except MetricsUnavailable:
                self.scrape_failures += 1
                continue
            if self._last is not None:
                self.intervals.append(self._interval(self._last, point))
            self._last = point

    def _interval(
        self,
        before: tuple[float, MetricsSample, float | None],
        after: tuple[float, MetricsSample, float | None],
    ) -> Interval:
        dt = max(after[0] - before[0], 1e-9)
        window = after[1].minus(before[1])
        clients = max(after[1].players, 1.0)
        cpu = None if after[2] is None or before[2] is None else (after[2] - before[2]) / dt
        return Interval(
            t_s=after[0] - self.started,
            tick_ms_p50=histogram_quantile(0.5, window.tick_buckets) * 1000.0,  # NaN: no ticks
            tick_ms_p99=histogram_quantile(0.99, window.tick_buckets) * 1000.0,
            late_ticks_per_s=window.late_ticks / dt,
            bytes_per_client_per_s=window.bytes_sent / dt / clients,
            snapshot_bytes_per_client_per_s=window.snapshot_bytes / dt / clients,
            players=after[1].players,
            server_cpu_percent=None if cpu is None else cpu * 100.0,
        )

    # -- the run -----------------------------------------------------------------------------

    def on_message(self, kind: str, worker: int, payload: dict[str, Any]) -> None:
        """Fleet callback: record progress; scrape the window's edges at play and done."""
        if kind == "progress":
            self.progress[worker] = payload
        elif kind == "play" or (kind == "done" and len(self._edges) == 1):
            try:
                self._edges.append(self._sample())
            except MetricsUnavailable:
                self.scrape_failures += 1
            self.phase = "playing" if kind == "play" else "finishing"

    def run(self, config: Any) -> FleetResult:
        sampler = threading.Thread(target=self._sampler, name="loadtest-sampler", daemon=True)
        sampler.start()
        try:
            with Live(
                self._live_table(), console=self.console, refresh_per_second=2, transient=True
            ) as live:

                def update(kind: str, worker: int, payload: dict[str, Any]) -> None:
                    self.on_message(kind, worker, payload)
                    live.update(self._live_table())

                return run_fleet(config, on_message=update)
        finally:
            self._stop.set()
            sampler.join(timeout=SCRAPE_JOIN_S)

    def _live_table(self) -> Table:
        table = Table(title=f"astranet-loadtest: {self.phase}", show_header=False)
        elapsed = time.monotonic() - self.started
        joined = sum(p.get("joined", 0) for p in self.progress.values())
        disconnects = sum(p.get("disconnects", 0) for p in self.progress.values())
        table.add_row("elapsed", f"{elapsed:.0f} s")
        table.add_row("bots joined", str(joined))
        table.add_row("disconnects", str(disconnects))
        if self.intervals:
            last = self.intervals[-1]
            table.add_row("tick p99 (last interval)", f"{last.tick_ms_p99:.1f} ms")
            table.add_row("late ticks / s", f"{last.late_ticks_per_s:.1f}")
            table.add_row("bytes / s / client", f"{last.bytes_per_client_per_s:.0f}")
            if last.server_cpu_percent is not None:
                table.add_row("server CPU", f"{last.server_cpu_percent:.0f} %")
        return table

    # -- results -----------------------------------------------------------------------------

    def summary(self, result: FleetResult, rooms: int) -> dict[str, Any]:
        bots = summarise(result, rooms)
        clients = bots["clients"]
        summary: dict[str, Any] = {"clients": clients, **bots}
        if len(self._edges) == 2:
            (t0, start, cpu0), (t1, end, cpu1) = self._edges
            window, seconds = end.minus(start), max(t1 - t0, 1e-9)
            self.window = (t0 - self.started, t1 - self.started)
            summary.update(
                {
                    "window_s": seconds,
                    "ticks": window.ticks,
                    "late_tick_fraction": window.late_ticks / window.ticks
                    if window.ticks
                    else None,
                    "skipped_ticks": window.skipped_ticks,
                    "tick_ms_mean": window.tick_sum_s / window.ticks * 1000
                    if window.ticks
                    else None,
                    "tick_ms_p50": _ms(histogram_quantile(0.5, window.tick_buckets)),
                    "tick_ms_p99": _ms(histogram_quantile(0.99, window.tick_buckets)),
                    "snapshot_bytes_per_client_per_s": window.snapshot_bytes / seconds / clients
                    if clients
                    else None,
                    "bytes_sent_per_client_per_s": window.bytes_sent / seconds / clients
                    if clients
                    else None,
                    "input_violations": window.input_violations,
                    "inputs_dropped": window.inputs_dropped,
                    "kicks": end.kicks_total,  # since the server started: joins count too
                    "kicks_by_reason": end.kicks,
                    "server_cpu_percent": (cpu1 - cpu0) / seconds * 100
                    if cpu0 is not None and cpu1 is not None
                    else None,
                }
            )
        else:
            summary.update(
                {
                    key: None
                    for key in (
                        "late_tick_fraction",
                        "tick_ms_p99",
                        "snapshot_bytes_per_client_per_s",
                    )
                }
            )
            summary["kicks"] = None
        summary["scrape_failures"] = self.scrape_failures
        return summary


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title="astranet-loadtest summary", show_header=False)
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        table.add_row(key, str(value))
    return table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="astranet-loadtest", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=None, help="drive this server (needs --http-url)")
    parser.add_argument("--http-url", default=None, help="its HTTP side port, for /metrics")
    parser.add_argument("--out", type=Path, default=Path("loadtest-out"), help="PNG folder")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between scrapes")
    add_fleet_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C: the server and the bot workers are already stopped
        print("astranet-loadtest: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.url is None) != (args.http_url is None):
        parser.error("--url and --http-url go together (or neither: a server is started)")
    console = Console(stderr=True)
    server: ServerProcess | None = None
    try:
        if args.url is None:
            # Every bot comes from 127.0.0.1: lift the per-address bounds (WIRE A4).
            server = ServerProcess(
                args.game,
                extra_args=("--max-rooms-per-peer", "0", "--max-connections-per-peer", "0"),
            )
            url, http_url, pid = server.ws_url, server.http_url, server.pid
            console.print(f"server pid {pid}: {url} {http_url}")
        else:
            url, http_url, pid = args.url, args.http_url, None
        scrape(http_url)  # fail early and clearly when the server is not there
        config = fleet_config(args, url)
        test = LoadTest(http_url, pid, args.interval, console)
        result = test.run(config)
        summary = test.summary(result, config.rooms)
    except AstranetError as exc:  # ServerStartError, MetricsUnavailable
        console.print(f"astranet-loadtest: {exc}")
        return EXIT_SERVER
    finally:
        if server is not None:
            server.close()
    title = (
        f"coop load test: {config.rooms} rooms x 4 {'lite ' if config.lite else ''}bots,"
        f" {config.worker_count()} bot workers"
    )
    all_rtts = [s for r in result.reports for s in r.rtt_samples_ms]
    all_latency = [s for r in result.reports for s in r.input_to_snapshot_ms]
    plots = write_plots(args.out, list(test.intervals), test.window, all_rtts, all_latency, title)
    summary["plots"] = [str(path) for path in plots]
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    (args.out / "intervals.json").write_text(json.dumps([asdict(i) for i in test.intervals]))
    console.print(_summary_table(summary))
    if args.json:
        print(json.dumps(summary))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
