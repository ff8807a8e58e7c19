"""Issue 12's capacity goals in one sitting: run each goal's benchmark, print figure against goal.

Runs, one after another (never two at once, so they do not share the machine), the benchmarks
that measure the capacity goals, reads the JSON object each prints on its last line, and prints
one table: goal, measured figure, target, met or missed (and by how much), and the command that
produced it. Repeated measurements (``--repeat``) report the median of the runs.

Steps (``--only`` picks some, comma-separated, in this order):

* ``protocol``: ``benchmarks/protocol.py`` (edge + protocol per inbound InputFrame ≤ 8 µs;
  send per client per tick ≤ 4 µs);
* ``coop``: ``benchmarks/coop_tick.py`` (a 4-player coop room tick at wave 1 ≤ 80 µs);
* ``gameclient``: ``astranet-loadtest --rooms 2`` (input → acknowledging snapshot p99 with the
  library's GameClient at its defaults ≤ 35.3 ms), ``--repeat`` runs;
* ``lite200``: ``astranet-loadtest --lite --rooms 50`` (the same p99 at 200 LiteBot clients);
* ``lite1000``: ``astranet-loadtest --lite --rooms 250`` (all 1,000 bots seated);
* ``colyseus``: ``benchmarks/vs_colyseus.py --clients 200,1000`` (server CPU ≤ Colyseus's and
  0 late ticks at 200 clients; ≥ 29 snapshots/s and < 1 % late at 1,000; bytes ≤ ⅓ at N=100);
* ``colyseus_n1000``: ``benchmarks/vs_colyseus.py --clients 40 --entities 1000`` (10 rooms,
  the anchor's default; bytes ≤ ⅓ of Colyseus at N=1000).

Usage::

    .venv/bin/python benchmarks/capacity_goals.py [--repeat 3] [--only coop,colyseus] [--json]

The whole set takes ~20 minutes at ``--repeat 3``. Results: docs/benchmarks.md, section
"Capacity goals (issue 12)".
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
PY = sys.executable
LOADTEST = [PY, "-m", "astranet.tools.loadtest"]
STEP_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class Goal:
    """One goal of the issue: a figure taken from a step's runs and its target."""

    name: str
    unit: str
    target: float
    at_most: bool  # True: the figure must be <= target; False: >= target
    figure: Callable[[list[dict[str, Any]]], float | None]

    def verdict(self, value: float | None) -> str:
        if value is None:
            return "not measured"
        met = value <= self.target if self.at_most else value >= self.target
        if met:
            return "met"
        if self.target == 0:
            return "missed"
        return f"missed ({value / self.target:.2f}x the goal)"


@dataclass(frozen=True)
class Step:
    name: str
    command: Callable[[argparse.Namespace, Path], list[str]]
    runs: Callable[[argparse.Namespace], int]
    goals: tuple[Goal, ...]


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _each(get: Callable[[dict[str, Any]], float | None]) -> Callable[[list[dict[str, Any]]], Any]:
    """The median over runs of one figure of each run."""

    def figure(runs: list[dict[str, Any]]) -> float | None:
        values: list[float | None] = []
        for run in runs:
            try:
                values.append(get(run))
            except (KeyError, IndexError, TypeError):
                values.append(None)
        return _median(values)

    return figure


def _coop_wave1(run: Any) -> float:
    return next(row["tick_us"] for row in run if row["scenario"] == "wave1")


def _colyseus(clients: int, figure: str, side: str = "astranet") -> Callable[[Any], Any]:
    def get(run: dict[str, Any]) -> float | None:
        row = run["rows"][str(clients)][figure]
        return row["ratio"] if side == "ratio" else row[side]["median"]

    return get


def _loadtest(rooms: int, duration: float, *, lite: bool) -> Callable[..., list[str]]:
    def command(args: argparse.Namespace, out: Path) -> list[str]:
        return [
            *LOADTEST,
            *(["--lite"] if lite else []),
            "--rooms",
            str(rooms),
            "--duration",
            str(duration),
            "--out",
            str(out),
            "--json",
        ]

    return command


def _vs_colyseus(clients: str, *extra: str) -> Callable[..., list[str]]:
    def command(args: argparse.Namespace, out: Path) -> list[str]:
        return [
            PY,
            str(BENCH / "vs_colyseus.py"),
            "--clients",
            clients,
            "--repeat",
            str(args.repeat),
            "--duration",
            "15",
            "--warmup",
            "2",
            *extra,
            "--json",
        ]

    return command


def _once(args: argparse.Namespace) -> int:
    return 1


def _repeated(args: argparse.Namespace) -> int:
    return args.repeat


P99 = "input_to_snapshot_ms_p99"
STEPS: tuple[Step, ...] = (
    Step(
        "protocol",
        lambda args, out: [PY, str(BENCH / "protocol.py"), "--repeat", "5", "--json"],
        _once,
        (
            Goal(
                "per inbound InputFrame, edge + protocol",
                "µs",
                8.0,
                True,
                # The real GameServer as the host (the stand-in host's case is ~0.4 us less).
                _each(lambda run: run["results"]["edge InputFrame path, GameServer"]["median_us"]),
            ),
            Goal(
                "per client per tick, snapshot send",
                "µs",
                4.0,
                True,
                _each(lambda run: run["results"]["snapshot send per client"]["median_us"]),
            ),
        ),
    ),
    Step(
        "coop",
        lambda args, out: [PY, str(BENCH / "coop_tick.py"), "--json"],
        _once,
        (Goal("4-player coop room tick, wave 1", "µs", 80.0, True, _each(_coop_wave1)),),
    ),
    Step(
        "gameclient",
        _loadtest(2, 20, lite=False),
        _repeated,
        (
            Goal(
                "input → snapshot p99, GameClient defaults",
                "ms",
                35.3,
                True,
                _each(lambda r: r[P99]),
            ),
        ),
    ),
    Step(
        "lite200",
        _loadtest(50, 20, lite=True),
        _once,
        (
            Goal("input → snapshot p99, 200 LiteBots", "ms", 35.3, True, _each(lambda r: r[P99])),
            Goal(
                "200 LiteBots: late ticks",
                "%",
                1.0,
                True,
                _each(lambda r: r["late_tick_fraction"] * 100),
            ),
        ),
    ),
    Step(
        "lite1000",
        _loadtest(250, 10, lite=True),
        _once,
        (Goal("LiteBots seated of 1,000", "bots", 1000, False, _each(lambda r: r["clients"])),),
    ),
    Step(
        "colyseus",
        _vs_colyseus("200,1000"),
        _once,
        (
            Goal(
                "200 clients: server CPU, astranet / Colyseus",
                "x",
                1.0,
                True,
                _each(_colyseus(200, "server_cpu_percent", "ratio")),
            ),
            Goal(
                "200 clients: late ticks",
                "%",
                0.0,
                True,
                _each(lambda r: _colyseus(200, "late_tick_fraction")(r) * 100),
            ),
            Goal(
                "N=100 bytes per client, astranet / Colyseus",
                "x",
                1 / 3,
                True,
                _each(_colyseus(200, "bytes_per_client_per_s", "ratio")),
            ),
            Goal(
                "1,000 clients: snapshots/s per client",
                "/s",
                29.0,
                False,
                _each(_colyseus(1000, "snapshots_per_client_per_s")),
            ),
            Goal(
                "1,000 clients: late ticks",
                "%",
                1.0,
                True,
                _each(lambda r: _colyseus(1000, "late_tick_fraction")(r) * 100),
            ),
        ),
    ),
    Step(
        "colyseus_n1000",
        _vs_colyseus("40", "--entities", "1000"),
        _once,
        (
            Goal(
                "N=1000 bytes per client, astranet / Colyseus",
                "x",
                1 / 3,
                True,
                _each(_colyseus(40, "bytes_per_client_per_s", "ratio")),
            ),
        ),
    ),
)


def run_step(step: Step, args: argparse.Namespace, index: int, total: int) -> dict[str, Any]:
    """Run one step's command (``runs`` times) and return its commands, runs and errors."""
    runs: list[Any] = []
    errors: list[str] = []
    count = step.runs(args)
    with tempfile.TemporaryDirectory(prefix=f"capacity-{step.name}-") as scratch:
        command = step.command(args, Path(scratch))
        for run in range(count):
            started = time.monotonic()
            print(
                f"[{index}/{total}] {step.name} run {run + 1}/{count}: {shlex.join(command)}",
                file=sys.stderr,
                flush=True,
            )
            done = subprocess.run(
                command, cwd=ROOT, capture_output=True, text=True, timeout=STEP_TIMEOUT_S
            )
            lines = [line for line in done.stdout.splitlines() if line.strip()]
            try:
                runs.append(json.loads(lines[-1]))
            except (IndexError, json.JSONDecodeError):
                tail = (done.stderr or done.stdout)[-1000:]
                errors.append(f"exit {done.returncode}: {tail}")
            print(
                f"[{index}/{total}] {step.name} run {run + 1}/{count} done in "
                f"{time.monotonic() - started:.0f} s (exit {done.returncode})",
                file=sys.stderr,
                flush=True,
            )
    return {"command": shlex.join(command), "runs": runs, "errors": errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of the repeated steps")
    parser.add_argument("--only", default="", help="comma-separated step names")
    parser.add_argument("--json", action="store_true", help="one JSON object as the last line")
    args = parser.parse_args(argv)
    wanted = [name for name in args.only.split(",") if name]
    unknown = set(wanted) - {step.name for step in STEPS}
    if unknown:
        parser.error(f"--only: unknown steps {sorted(unknown)}; known: {[s.name for s in STEPS]}")
    steps = [step for step in STEPS if not wanted or step.name in wanted]
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "goals": []}
    for index, step in enumerate(steps, 1):
        result = run_step(step, args, index, len(steps))
        for goal in step.goals:
            value = goal.figure(result["runs"]) if result["runs"] else None
            report["goals"].append(
                {
                    "step": step.name,
                    "goal": goal.name,
                    "value": value,
                    "unit": goal.unit,
                    "target": goal.target,
                    "at_most": goal.at_most,
                    "verdict": goal.verdict(value),
                    "runs": len(result["runs"]),
                    "command": result["command"],
                }
            )
        for error in result["errors"]:
            print(f"{step.name}: {error}", file=sys.stderr)
        report.setdefault("raw", {})[step.name] = result
    print(f"\n{'goal':48} {'figure':>12} {'target':>12}  verdict")
    for row in report["goals"]:
        value = "—" if row["value"] is None else f"{row['value']:.3g} {row['unit']}"
        sign = "≤" if row["at_most"] else "≥"
        target = f"{sign} {row['target']:.3g} {row['unit']}"
        print(f"{row['goal']:48} {value:>12} {target:>12}  {row['verdict']} ({row['runs']} runs)")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
