"""Side by side: the Colyseus 0.18 "cubes" anchor and astranet on the same scenario, one sitting.

For each client count (``--clients``, default 200 and 1000; rooms = clients / 4) and each of
``--repeat`` repetitions, runs the anchor's ``./run.sh`` (its own server and load generator,
``../shared/anchors/colyseus`` copied to ``--workdir`` because shared/ is read-only, ``npm ci``
once) and ``benchmarks/server_load.py`` (astranet's server subprocess and load clients) with
the same N, moving fraction, rooms, window and warm-up. The order alternates between
repetitions so a burst of foreign load hits both sides alike. Prints the median of each
figure per side, its min..max spread, and the ratio astranet / Colyseus of the medians;
``--json`` prints one JSON object as the last line.

Figures (each side's own measurement; see their docs):

* server CPU % of one core (``/proc/<pid>/stat`` utime+stime over the window, both sides);
* snapshots (patches) received per client per second;
* late ticks: Colyseus counts simulation intervals over 50 ms (1.5 periods); astranet counts
  ticks started over half a period late plus skipped tick slots (a stricter rule);
* bytes per client per second: WebSocket payload bytes of state messages (Colyseus: every
  message; astranet: Snapshot messages);
* ``other_procs``: the anchor's own reading of foreign CPU on the machine during its window.

Pinning: like the anchor, astranet's server and load clients are not pinned by default
(``server_load.py --no-pin``): on a shared machine a server pinned to one CPU waits behind
whatever else runs there (measured: 3.7 % CPU and 1 snapshot/s at load average 10, against the
anchor's unpinned 17 %). ``--pin`` pins astranet's server to CPU 0 and its clients to the
others (the issue's "load clients on the other core"), for a quiet machine.
Colyseus' load generator decodes every patch (DECODE=1, its default); astranet's load
clients decode every snapshot envelope but not the payload.

    .venv/bin/python benchmarks/vs_colyseus.py [--clients 200,1000] [--repeat 3] \\
        [--duration 15] [--warmup 2] [--event-loop auto] [--json]

Needs node/npm (the anchor installs Node 22 from npm). Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# ../shared next to the checkout (a git worktree under wt/ has it two levels up).
ANCHOR_CANDIDATES = tuple(up / "shared" / "anchors" / "colyseus" for up in ROOT.parents[:2])
SERVER_LOAD = Path(__file__).with_name("server_load.py")
# Slack over the measured window for joins, warm-up, the anchor's idle wait and teardown.
RUN_SLACK_S = 300.0

#: (name, Colyseus getter, astranet key) of every compared figure.
FIGURES: tuple[tuple[str, Any, str], ...] = (
    ("server_cpu_percent", lambda c: c["server_cpu_pct"], "server_cpu_percent"),
    (
        "snapshots_per_client_per_s",
        lambda c: c["patches_per_client_s"],
        "snapshots_per_client_per_s",
    ),
    ("late_tick_fraction", lambda c: c["server_tick"]["late_tick_frac"], "late_tick_fraction"),
    (
        "bytes_per_client_per_s",
        lambda c: c["bytes_per_client_s"],
        "snapshot_bytes_per_client_per_s",
    ),
    ("clients_connected", lambda c: c["clients_connected"], "clients"),
)


def find_anchor(given: Path | None) -> Path:
    for candidate in (given,) if given is not None else ANCHOR_CANDIDATES:
        if (candidate / "run.sh").exists():
            return candidate
    raise SystemExit(f"vs_colyseus: no Colyseus anchor at {given or ANCHOR_CANDIDATES}")


def prepare_anchor(source: Path, workdir: Path) -> Path:
    """A writable copy of the anchor with its node_modules (``npm ci`` when missing/stale)."""
    anchor = workdir / "colyseus"
    lock = source / "package-lock.json"
    stamp = anchor / "node_modules" / ".astranet-lock"
    if stamp.exists() and stamp.read_bytes() == lock.read_bytes():
        return anchor
    if anchor.exists():
        shutil.rmtree(anchor)
    shutil.copytree(source, anchor, ignore=shutil.ignore_patterns("node_modules", "*.log"))
    for path in [anchor, *anchor.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)  # shared/ is read-only; the copy must not be
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=anchor, check=True, timeout=900)
    stamp.write_bytes(lock.read_bytes())
    return anchor


def run_colyseus(anchor: Path, args: argparse.Namespace, rooms: int) -> dict[str, Any]:
    env = {
        **os.environ,
        "N": str(args.entities),
        "MOVING_FRACTION": str(args.moving_fraction),
        "R": str(rooms),
        "D": str(args.duration),
        "WARMUP": str(args.warmup),
        "IDLE_WAIT": "20",  # the anchor waits for a quiet machine; bounded
    }
    done = subprocess.run(
        ["./run.sh"],
        cwd=anchor,
        env=env,
        capture_output=True,
        text=True,
        timeout=args.duration + args.warmup + RUN_SLACK_S,
    )
    return _last_json(done, "colyseus run.sh")


def run_astranet(args: argparse.Namespace, rooms: int) -> dict[str, Any]:
    command = [
        sys.executable,
        str(SERVER_LOAD),
        "--entities",
        str(args.entities),
        "--moving-fraction",
        str(args.moving_fraction),
        "--rooms",
        str(rooms),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--event-loop",
        args.event_loop,
        "--no-progress",
        "--json",
    ]
    if not args.pin:
        command.append("--no-pin")
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=args.duration + RUN_SLACK_S
    )
    return _last_json(done, "astranet server_load.py")


def _last_json(done: subprocess.CompletedProcess[str], what: str) -> dict[str, Any]:
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout)[-2000:]
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{tail}")
    return json.loads(lines[-1])


def _loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _get(getter: Any, run: dict[str, Any]) -> Any:
    """A figure of one run, or None when that run did not report it."""
    try:
        return getter(run)
    except (KeyError, TypeError):
        return None


def summarise(colyseus: list[dict[str, Any]], astranet: list[dict[str, Any]]) -> dict[str, Any]:
    """Median, min and max per side and figure, and the ratio of the medians."""
    rows: dict[str, Any] = {}
    for name, from_colyseus, key in FIGURES:
        ours = [
            float(v)
            for v in (_get(operator.itemgetter(key), run) for run in astranet)
            if v is not None
        ]
        theirs = [float(v) for v in (_get(from_colyseus, run) for run in colyseus) if v is not None]
        if not ours or not theirs:
            rows[name] = {"astranet": ours, "colyseus": theirs, "ratio": None}
            continue
        median_ours, median_theirs = statistics.median(ours), statistics.median(theirs)
        rows[name] = {
            "astranet": {"median": median_ours, "min": min(ours), "max": max(ours)},
            "colyseus": {"median": median_theirs, "min": min(theirs), "max": max(theirs)},
            "ratio": median_ours / median_theirs if median_theirs else None,
        }
    rows["colyseus_other_procs_percent"] = [
        run.get("other_procs_cpu_pct_of_all_cores") for run in colyseus
    ]
    rows["astranet_tick_ms_p99"] = [run["tick_ms_p99"] for run in astranet]
    rows["astranet_input_to_snapshot_ms_p99"] = [
        run["input_to_snapshot_ms_p99"] for run in astranet
    ]
    return rows


def _print(summary: dict[str, Any], clients: int) -> None:
    print(f"\n{clients} clients ({clients // 4} rooms)")
    print(f"{'figure':30} {'astranet median (min..max)':>30} {'colyseus median (min..max)':>30} "
          f"{'ratio':>7}")  # fmt: skip
    for name, _, _ in FIGURES:
        row = summary[name]

        def cell(side: Any) -> str:
            if not isinstance(side, dict):
                return f"n/a {side}"
            return f"{side['median']:.4g} ({side['min']:.4g}..{side['max']:.4g})"

        ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}"
        print(f"{name:30} {cell(row['astranet']):>30} {cell(row['colyseus']):>30} {ratio:>7}")
    print(f"  colyseus other_procs % of machine: {summary['colyseus_other_procs_percent']}")
    print(f"  astranet tick p99 ms: {summary['astranet_tick_ms_p99']}")
    print(f"  astranet input->snapshot p99 ms: {summary['astranet_input_to_snapshot_ms_p99']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="200,1000", help="comma-separated client counts")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--entities", type=int, default=100)
    parser.add_argument("--moving-fraction", type=float, default=0.1)
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--event-loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/astranet-vs-colyseus"))
    parser.add_argument("--anchor", type=Path, help="the anchor folder (default: ../shared/...)")
    parser.add_argument(
        "--pin", action="store_true", help="pin astranet's server to CPU 0, clients elsewhere"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object as the last line")
    args = parser.parse_args(argv)
    if args.duration + args.warmup > 28:
        parser.error("--duration + --warmup must stay <= 28 (the anchor's limit)")
    counts = [int(part) for part in args.clients.split(",") if part]
    if any(count < 4 or count % 4 for count in counts):
        parser.error("--clients: multiples of 4 (rooms of 4)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    anchor = prepare_anchor(find_anchor(args.anchor), args.workdir)
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": {}}
    for clients in counts:
        rooms = clients // 4
        colyseus_runs: list[dict[str, Any]] = []
        astranet_runs: list[dict[str, Any]] = []
        for rep in range(args.repeat):
            order = ("colyseus", "astranet") if rep % 2 == 0 else ("astranet", "colyseus")
            for side in order:
                load = _loadavg()
                started = time.monotonic()
                try:
                    if side == "colyseus":
                        run = run_colyseus(anchor, args, rooms)
                        colyseus_runs.append(run)
                    else:
                        run = run_astranet(args, rooms)
                        astranet_runs.append(run)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    # One failed run (e.g. the anchor found the machine busy) costs that run.
                    print(
                        f"[{clients} clients, rep {rep + 1}] {side} failed: {exc}", file=sys.stderr
                    )
                    run = {"error": str(exc)[-500:]}
                with (args.workdir / "runs.jsonl").open("a") as raw:  # every run, as it ends
                    raw.write(json.dumps({"clients": clients, "side": side, "run": run}) + "\n")
                print(
                    f"[{clients} clients, rep {rep + 1}/{args.repeat}] {side} done in "
                    f"{time.monotonic() - started:.0f} s (load average before: {load:.2f})",
                    file=sys.stderr,
                )
        if not colyseus_runs or not astranet_runs:
            print(f"{clients} clients: no complete pair of runs", file=sys.stderr)
            continue
        summary = summarise(colyseus_runs, astranet_runs)
        summary["runs"] = {"colyseus": colyseus_runs, "astranet": astranet_runs}
        report["rows"][str(clients)] = summary
        _print(summary, clients)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
