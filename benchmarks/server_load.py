"""Server load benchmark: R rooms x 4 real clients against an ``astranet-server`` subprocess.

Scenario (the issue's, for comparison with Colyseus 0.18 on this machine): the server runs the
cubes game (astranet/examples/cubes: N scenery cubes, ``--moving-fraction`` of them bouncing every
tick,
one input-driven avatar per player). ``--rooms`` groups of 4 clients join (one room each),
send signed inputs at 30 Hz and ack every snapshot; after ``--warmup`` seconds we measure for
``--duration`` seconds:

* server CPU % (of one core): ``/proc/<pid>/stat`` utime + stime of the server process only,
  and of its main thread alone (the event loop: ticks and sockets; the difference is the
  storage writer thread);
* tick duration p50/p99 (interpolated inside the ``/metrics`` histogram buckets -- coarse) and
  the exact mean (histogram sum / count);
* late-tick fraction: (late + skipped) / (ticks + skipped) from ``/metrics``; a late tick starts
  more than half a period after its scheduled time, a skipped slot never ran at all;
* snapshot bytes per client per second (whole Snapshot messages; payload-only alongside);
* clients per encode: snapshots the rooms' fan-outs handed out per payload they encoded
  (``/metrics``; 4 when every room's clients share one delta base);
* input -> snapshot latency p50/p99: from sending seq ``s`` to the first snapshot with
  ``last_input_seq >= s`` (exact, every input of every client).

``--input-phase`` picks when clients send: ``spread`` (default; comparable with earlier
numbers) spreads them over the period, so an input waits 0..1 period for the next tick;
``aligned`` times every input ``--input-lead-ms`` before the next server tick as estimated from
snapshot arrival times (details and caveats in benchmarks/_loadclients.py), as real netcode
clients do. ``input_target_miss_fraction`` (aligned only) is the share of inputs applied a tick
later than the one they were timed for: the lead was too short for them.

Clients run in ``--workers`` separate processes (benchmarks/_loadclients.py), so their CPU is
never counted as the server's. By default (``--pin``, on a machine with >= 2 cores) the server
is pinned to CPU 0 and the clients to the other CPUs, so client load cannot delay a tick.

Usage::

    .venv/bin/python benchmarks/server_load.py --entities 1000 --moving-fraction 0.1 \\
        --rooms 25 --duration 20 [--input-phase aligned [--input-lead-ms 18]] \\
        [--json] [--plot docs/img --label n1000]

Results: docs/benchmarks.md, section "Server load".
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _loadclients import (
    DEFAULT_INPUT_LEAD_MS,
    GROUP_SIZE,
    INPUT_PHASES,
    PROTOCOLS,
    WorkerResult,
    join_limit_s,
    runqueue_wait_s,
    worker_main,
)
from _loadserver import start_py_spy, summarise_collapsed
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from astranet.errors import AstranetError
from astranet.tools.serverproc import (
    MetricsSample,
    ServerProcess,
    cpu_seconds,
    histogram_quantile,
    scrape,
)

__all__ = ["LoadResult", "main", "run"]

READY_TIMEOUT_S = 60.0  # 1,000 handshakes + joins on a busy 2-core box take a few seconds
RESULT_GRACE_S = 30.0  # after the window: workers close sockets and pickle their samples
# An overloaded server answers /metrics late (the HTTP side port shares the event loop).
SCRAPE_TIMEOUT_S = 30.0


class LoadRunError(AstranetError):
    """A worker failed to connect or join, or did not report back in time."""


@dataclass(frozen=True, slots=True)
class LoadResult:
    """One run's figures (``--json`` prints ``asdict`` of this)."""

    clients: int
    rooms: int
    entities: int
    moving_fraction: float
    duration_s: float
    workers: int
    pinned: bool
    input_phase: str
    input_lead_ms: float | None  # aligned only
    protocol: str  # a1 (compact envelope, acks folded into inputs) or v1
    event_loop: str  # the server's: auto (uvloop when installed), asyncio or uvloop
    server_cpu_percent: float
    # Time the server's threads were runnable but waited for a CPU (/proc schedstat), % of the
    # window: foreign load on a shared machine shows here, not as server CPU.
    server_runqueue_wait_percent: float
    # The event loop's thread (ticks, sockets); the rest is the storage writer (and any helper
    # thread): server_cpu_percent - server_main_thread_cpu_percent.
    server_main_thread_cpu_percent: float
    ticks: int
    late_ticks: int
    skipped_ticks: int
    late_tick_fraction: float
    tick_ms_p50: float
    tick_ms_p99: float
    tick_ms_mean: float
    snapshot_bytes_per_client_per_s: float
    snapshot_payload_bytes_per_client_per_s: float
    snapshots_per_client_per_s: float
    full_snapshot_fraction: float
    clients_per_encode: float  # fan-out deliveries per payload encode (4 = a room shares one)
    inputs_per_client_per_s: float
    input_to_snapshot_ms_p50: float
    input_to_snapshot_ms_p99: float
    input_to_snapshot_ms_max: float
    latency_samples: int
    latency_overflow: int
    input_target_miss_fraction: float | None  # aligned only
    disconnects: int
    protocol_errors: int  # server messages the clients could not decode, ProtocolError replies
    close_codes: dict[str, int]  # Close codes of connections the server closed before the end
    client_late_slot_fraction: float
    client_cpu_percent: float  # all load workers together, % of one core
    client_event_loop: str  # the load workers' (uvloop when installed)
    client_runqueue_wait_percent: float  # as the server's, all load workers together
    server_exit_code: int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=1000, help="scenery cubes per room")
    parser.add_argument("--moving-fraction", type=float, default=0.1)
    parser.add_argument("--rooms", type=int, default=25, help="rooms of 4 clients")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="client processes (default: 1 up to 200 clients, else 2)",
    )
    parser.add_argument(
        "--input-phase",
        choices=INPUT_PHASES,
        default="spread",
        help="spread: client sends spread over the period (default); aligned: "
        "timed to arrive just before the estimated server tick",
    )
    parser.add_argument(
        "--input-lead-ms",
        type=float,
        default=DEFAULT_INPUT_LEAD_MS,
        help="aligned: send this long before the estimated tick "
        f"(default {DEFAULT_INPUT_LEAD_MS:g})",
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin the server to CPU 0 and the clients elsewhere",
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="a1",
        help="a1: compact snapshots, acks folded into inputs (default); v1: map envelope + Acks",
    )
    parser.add_argument(
        "--event-loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="the server's event loop (ASTRANET_EVENT_LOOP; auto = uvloop when installed)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", type=Path, help="write server_load_<label>_*.png here")
    parser.add_argument("--label", default="run", help="name used in plot file names")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="FILE",
        help="profile the server during the window (collapsed stacks)",
    )
    args = parser.parse_args(argv)
    if args.rooms < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--rooms must be >= 1, --duration > 0, --warmup >= 0")
    if not 0 <= args.input_lead_ms < 1000 / 30:
        parser.error("--input-lead-ms must be in [0, one period = 33.3)")
    return args


def _split(groups: int, workers: int) -> list[int]:
    """Rooms per worker, as even as possible (no worker gets none)."""
    workers = max(1, min(workers, groups))
    return [groups // workers + (i < groups % workers) for i in range(workers)]


def _recv(pipe: Any, timeout_s: float, what: str) -> tuple[Any, ...]:
    if not pipe.poll(timeout_s):
        raise LoadRunError(f"a load worker did not report {what} within {timeout_s:.0f} s")
    try:
        message = pipe.recv()
    except EOFError:
        raise LoadRunError(f"a load worker died before reporting {what}") from None
    if message[0] == "error":
        raise LoadRunError(f"a load worker failed: {message[1]}")
    return message


def run(args: argparse.Namespace, console: Console) -> tuple[LoadResult, dict[str, Any]]:
    """Run one scenario; returns the figures and raw series for plots."""
    clients_wanted = args.rooms * GROUP_SIZE
    workers = args.workers or (1 if clients_wanted <= 200 else 2)
    cpus = sorted(os.sched_getaffinity(0))
    pinned = args.pin and len(cpus) >= 2
    env = {
        "ASTRANET_CUBES_ENTITIES": str(args.entities),
        "ASTRANET_CUBES_MOVING_FRACTION": str(args.moving_fraction),
        "ASTRANET_EVENT_LOOP": args.event_loop,
    }
    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    pipes: list[Any] = []
    with ServerProcess(
        "astranet.examples.cubes:game",
        # Every load client comes from 127.0.0.1: lift the per-address bounds (WIRE A4).
        ("--regions", "us-east", "--max-rooms-per-peer", "0", "--max-connections-per-peer", "0"),
        env=env,
        cpu=cpus[0] if pinned else None,
    ) as server:
        try:
            for groups in _split(args.rooms, workers):
                parent_end, child_end = ctx.Pipe()
                proc = ctx.Process(
                    target=worker_main,
                    args=(
                        child_end,
                        server.ws_url,
                        groups,
                        args.input_phase,
                        args.input_lead_ms / 1000.0,
                        args.protocol,
                        join_limit_s(args.rooms),
                    ),
                    daemon=True,
                )
                proc.start()
                if pinned:
                    os.sched_setaffinity(proc.pid, set(cpus[1:]))
                procs.append(proc)
                pipes.append(parent_end)
            with console.status(f"joining {clients_wanted} clients to {args.rooms} rooms"):
                ready_s = max(READY_TIMEOUT_S, join_limit_s(args.rooms))
                clients = sum(_recv(p, ready_s + 10, "ready")[1] for p in pipes)
            t0 = time.monotonic() + args.warmup
            t1 = t0 + args.duration
            for pipe in pipes:
                pipe.send(("start", t0, t1))
            before, (main_thread_cpu, wait), cpu_series = _watch(server, t0, t1, args, console)
            results = [
                _recv(p, args.duration + args.warmup + RESULT_GRACE_S, "results")[1] for p in pipes
            ]
        finally:
            for proc in procs:
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.kill()
        window, cpu_s = before
        exit_code = server.stop()
    return _summarise(
        args,
        clients,
        workers,
        pinned,
        window,
        (cpu_s, main_thread_cpu, wait),
        results,
        exit_code,
        cpu_series,
    )


def _watch(
    server: ServerProcess, t0: float, t1: float, args: argparse.Namespace, console: Console
) -> tuple[tuple[MetricsSample, float], tuple[float, float], list[float]]:
    """Sample the server at t0 and t1 (plus CPU once a second for the plot); returns the
    metrics over the window with the process's CPU %, (its main thread's CPU %, its run-queue
    wait %), the series."""
    time.sleep(max(0.0, t0 - time.monotonic()))  # cross-process deadline: nothing to await
    metrics0, cpu0 = scrape(server.http_url, SCRAPE_TIMEOUT_S), cpu_seconds(server.pid)
    main0 = cpu_seconds(server.pid, server.pid)
    wait0 = runqueue_wait_s(server.pid)
    profiler = None if args.py_spy is None else start_py_spy(server.pid, args.duration, args.py_spy)
    series: list[float] = []
    last_cpu, last_t = cpu0, time.monotonic()
    progress = Progress(
        TextColumn("measuring"),
        BarColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not args.progress,
        transient=True,
    )
    with progress:
        task = progress.add_task("measure", total=args.duration)
        while (now := time.monotonic()) < t1:
            time.sleep(min(1.0, t1 - now))
            cpu, t = cpu_seconds(server.pid), time.monotonic()
            series.append(100.0 * (cpu - last_cpu) / (t - last_t))
            last_cpu, last_t = cpu, t
            progress.update(task, completed=min(args.duration, t - t0))
    metrics1, cpu1 = scrape(server.http_url, SCRAPE_TIMEOUT_S), cpu_seconds(server.pid)
    main1 = cpu_seconds(server.pid, server.pid)
    wait1 = runqueue_wait_s(server.pid)
    elapsed = time.monotonic() - t0
    if profiler is not None:
        profiler.wait(timeout=30)
    window = (metrics1.minus(metrics0), 100.0 * (cpu1 - cpu0) / elapsed)
    percents = (100.0 * (main1 - main0) / elapsed, 100.0 * (wait1 - wait0) / elapsed)
    return window, percents, series


def _summarise(
    args: argparse.Namespace,
    clients: int,
    workers: int,
    pinned: bool,
    window: MetricsSample,
    cpu_percents: tuple[float, float, float],
    results: list[WorkerResult],
    exit_code: int,
    cpu_series: list[float],
) -> tuple[LoadResult, dict[str, Any]]:
    cpu_percent, main_thread_cpu_percent, wait_percent = cpu_percents
    latencies = (
        np.concatenate([np.frombuffer(r.latencies_s, dtype=np.float64) for r in results]) * 1000.0
    )
    total = WorkerResult()
    for r in results:
        for name in (
            "snapshots",
            "snapshot_bytes",
            "snapshot_payload_bytes",
            "full_snapshots",
            "inputs_sent",
            "disconnects",
            "protocol_errors",
            "latency_overflow",
            "input_slots",
            "late_input_slots",
            "targeted_inputs",
            "target_missed",
        ):
            setattr(total, name, getattr(total, name) + getattr(r, name))
    per_client_s = max(1, clients) * args.duration
    aligned = args.input_phase == "aligned"
    slots = window.ticks + window.skipped_ticks

    def pct(q: float) -> float:
        return float(np.percentile(latencies, q)) if len(latencies) else math.nan

    result = LoadResult(
        clients=clients,
        rooms=args.rooms,
        entities=args.entities,
        moving_fraction=args.moving_fraction,
        duration_s=args.duration,
        workers=workers,
        pinned=pinned,
        input_phase=args.input_phase,
        input_lead_ms=args.input_lead_ms if aligned else None,
        protocol=args.protocol,
        event_loop=args.event_loop,
        server_cpu_percent=round(cpu_percent, 1),
        server_runqueue_wait_percent=round(wait_percent, 1),
        server_main_thread_cpu_percent=round(main_thread_cpu_percent, 1),
        ticks=int(window.ticks),
        late_ticks=int(window.late_ticks),
        skipped_ticks=int(window.skipped_ticks),
        late_tick_fraction=(window.late_ticks + window.skipped_ticks) / slots if slots else 0.0,
        tick_ms_p50=round(1000 * histogram_quantile(0.5, window.tick_buckets), 3),
        tick_ms_p99=round(1000 * histogram_quantile(0.99, window.tick_buckets), 3),
        tick_ms_mean=round(1000 * window.tick_sum_s / max(1.0, window.ticks), 3),
        snapshot_bytes_per_client_per_s=round(total.snapshot_bytes / per_client_s, 1),
        snapshot_payload_bytes_per_client_per_s=round(
            total.snapshot_payload_bytes / per_client_s, 1
        ),
        snapshots_per_client_per_s=round(total.snapshots / per_client_s, 2),
        full_snapshot_fraction=total.full_snapshots / max(1, total.snapshots),
        clients_per_encode=round(window.snapshot_deliveries / max(1.0, window.snapshot_encodes), 2),
        inputs_per_client_per_s=round(total.inputs_sent / per_client_s, 2),
        input_to_snapshot_ms_p50=round(pct(50), 2),
        input_to_snapshot_ms_p99=round(pct(99), 2),
        input_to_snapshot_ms_max=round(pct(100), 2),
        latency_samples=len(latencies),
        latency_overflow=total.latency_overflow,
        input_target_miss_fraction=(
            total.target_missed / max(1, total.targeted_inputs) if aligned else None
        ),
        disconnects=total.disconnects,
        protocol_errors=total.protocol_errors,
        close_codes=_merged_close_codes(results),
        client_late_slot_fraction=total.late_input_slots / max(1, total.input_slots),
        client_cpu_percent=round(100.0 * sum(r.cpu_s for r in results) / args.duration, 1),
        client_event_loop=results[0].event_loop if results else "",
        client_runqueue_wait_percent=round(
            100.0 * sum(r.wait_s for r in results) / args.duration, 1
        ),
        server_exit_code=exit_code,
    )
    return result, {
        "latencies_ms": latencies,
        "cpu_series": cpu_series,
        "tick_buckets": window.tick_buckets,
    }


def _merged_close_codes(results: list[WorkerResult]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for r in results:
        for code, count in r.close_codes.items():
            merged[str(code)] = merged.get(str(code), 0) + count
    return dict(sorted(merged.items()))


def _plot(result: LoadResult, raw: dict[str, Any], directory: Path, label: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    title = (
        f"{result.clients} clients, {result.rooms} rooms, N={result.entities}, "
        f"{result.moving_fraction:.0%} moving"
    )
    latency_path = directory / f"server_load_{label}_latency.png"
    fig, ax = plt.subplots(figsize=(6, 3.5))
    lat = np.sort(raw["latencies_ms"])
    if len(lat):
        ax.plot(lat, np.arange(1, len(lat) + 1) / len(lat))
    ax.axvline(1000 / 30 + 2, color="red", linestyle="--", label="goal p99: 1 tick + 2 ms")
    ax.set_xlabel("input -> acknowledging snapshot (ms)")
    ax.set_ylabel("fraction of inputs")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(latency_path, dpi=100)
    plt.close(fig)
    cpu_path = directory / f"server_load_{label}_cpu.png"
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(np.arange(1, len(raw["cpu_series"]) + 1), raw["cpu_series"], marker=".")
    ax.set_xlabel("second of the measurement window")
    ax.set_ylabel("server CPU % (one core)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(cpu_path, dpi=100)
    plt.close(fig)
    return [latency_path, cpu_path]


def _print_table(result: LoadResult, console: Console) -> None:
    table = Table(title="astranet server load", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in asdict(result).items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    try:
        result, raw = run(args, console)
    except AstranetError as exc:
        console.print(f"[red]server_load: {exc}[/red]")
        return 1
    if args.plot is not None:
        for path in _plot(result, raw, args.plot, args.label):
            console.print(f"wrote {path}")
    if args.py_spy is not None and args.py_spy.exists():
        console.print("server profile (share of samples: inclusive, self)")
        for name, inclusive, own in summarise_collapsed(args.py_spy):
            console.print(f"  {inclusive:6.1%} {own:6.1%}  {name}")
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        _print_table(result, Console())
    return 0


if __name__ == "__main__":
    sys.exit(main())
