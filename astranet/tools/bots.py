"""``astranet-bots``: R rooms x 4 headless co-op bots against a running server.

Usage::

    astranet-bots [--url ws://127.0.0.1:8788] [--region us-east] [--game-mode coop]
                  [--rooms 1] [--duration 10] [--workers 0] [--fps 30] [--seed 0] [--lite] [--json]

``AW_WS_URL`` and ``AW_REGION`` set the defaults of ``--url`` and ``--region`` (as for
``astranet-client``). Each bot is a real client (``GameClient`` + ``ClientWorld`` with
prediction) steered by the game's bot brain (coop: :mod:`astranet.examples.coop.brain`); rooms
are formed exactly R x 4 and spread over worker processes (:mod:`astranet.tools.fleet`).
``--lite`` uses :class:`~astranet.tools.litebot.LiteBot` s instead: the same traffic, no
prediction.

Output: a table with one line per bot (room, style, RTT, input-to-snapshot p99, snapshots,
corrections, max prediction error, disconnects, kicked) and a totals line; with ``--json``
one JSON object instead: ``{"summary": {...}, "bots": [...], "workers": [...]}`` (see
:func:`summarise`; per-bot sample lists are left out, their percentiles are in).
Exit status: 0 when every bot joined and none was kicked or lost; 2 when no bot could join;
4 otherwise. Never a traceback for a server that is down or refuses.
Limits: see :mod:`astranet.tools.fleet`. Benchmark: ``astranet-loadtest``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from astranet.client.events import region_from_env
from astranet.tools.bot import BotReport
from astranet.tools.fleet import BOTS_PER_ROOM, DEFAULT_GAME, FleetConfig, FleetResult, run_fleet

__all__ = ["main", "percentile", "summarise"]

EXIT_OK, EXIT_NO_BOTS, EXIT_DEGRADED = 0, 2, 4


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of ``values``, None when there are none."""
    array = np.fromiter(values, dtype=np.float64)
    return float(np.percentile(array, q)) if array.size else None


def summarise(result: FleetResult, rooms: int) -> dict[str, Any]:
    """Totals and pooled percentiles over every bot of a fleet run."""
    reports = result.reports
    joined = [r for r in reports if r.joined]
    rtts = [s for r in joined for s in r.rtt_samples_ms]
    latencies = [s for r in joined for s in r.input_to_snapshot_ms]
    members: dict[str, int] = {}
    for report in joined:
        members[report.room_id or ""] = members.get(report.room_id or "", 0) + 1
    return {
        "rooms_requested": rooms,
        "bots_requested": rooms * BOTS_PER_ROOM,
        "clients": len(joined),
        "rooms_full": sum(1 for count in members.values() if count == BOTS_PER_ROOM),
        "join_failures": len(reports) - len(joined),
        "join_retries": sum(r.join_retries for r in reports),
        "join_errors": _tally(r.error or "no reason recorded" for r in reports if not r.joined),
        "disconnects": sum(r.disconnects for r in reports),
        "reconnects": sum(r.reconnects for r in reports),
        "kicked": sum(r.kicked for r in reports),
        "sessions_lost": sum(1 for r in joined if r.error is not None),
        "snapshots": sum(r.snapshots for r in joined),
        "inputs_sent": sum(r.inputs_sent for r in joined),
        "shots": sum(r.shots for r in joined),
        "corrections": sum(r.corrections for r in joined),
        "predictions_compared": sum(r.compared for r in joined),
        "predictions_exact": sum(r.exact for r in joined),
        "max_prediction_error": max((r.max_error for r in joined), default=0.0),
        "rtt_ms_p50": percentile(rtts, 50),
        "rtt_ms_p99": percentile(rtts, 99),
        "input_to_snapshot_ms_p50": percentile(latencies, 50),
        "input_to_snapshot_ms_p99": percentile(latencies, 99),
        "bot_cpu_s": sum(w.cpu_s for w in result.workers),
        "bot_late_frames": sum(w.late_frames for w in result.workers),
        "bot_frames": sum(w.frames for w in result.workers),
        "worker_errors": [w.error for w in result.workers if w.error],
    }


def _tally(reasons: Iterable[str]) -> dict[str, int]:
    """Why bots failed to join, most common first; addresses and ports in a reason are
    folded (``ws://127.0.0.1:41234`` -> ``ws://ADDR``) so one cause counts once, while close
    codes (``connection closed: 1013 ...``) stay apart."""
    counts: dict[str, int] = {}
    for reason in reasons:
        key = _ADDRESS.sub("ADDR", reason)
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


_ADDRESS = re.compile(r"\[[0-9a-fA-F:.]+\](:\d+)?|\d+\.\d+\.\d+\.\d+(:\d+)?|localhost(:\d+)?")


def exit_status(summary: dict[str, Any]) -> int:
    if summary["clients"] == 0:
        return EXIT_NO_BOTS
    degraded = (
        summary["join_failures"]
        or summary["kicked"]
        or summary["sessions_lost"]
        or summary["worker_errors"]
    )
    return EXIT_DEGRADED if degraded else EXIT_OK


def bot_rows(reports: Sequence[BotReport]) -> list[dict[str, Any]]:
    """Per-bot dicts for JSON: the report without its sample lists, plus their percentiles."""
    rows = []
    for report in reports:
        row = report.to_dict()
        row["rtt_ms_p99"] = percentile(row.pop("rtt_samples_ms"), 99)
        row["input_to_snapshot_ms_p99"] = percentile(row.pop("input_to_snapshot_ms"), 99)
        rows.append(row)
    return rows


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_table(reports: Sequence[BotReport], summary: dict[str, Any]) -> Table:
    table = Table(
        title=f"astranet-bots: {summary['clients']}/{summary['bots_requested']} bots"
        f" in {summary['rooms_full']} full rooms"
    )
    for name in (
        "bot",
        "room",
        "style",
        "rtt ms",
        "in→snap p99",
        "snapshots",
        "corrections",
        "max err",
        "disconnects",
        "kicked",
        "error",
    ):
        table.add_column(name, justify="left" if name in ("room", "style", "error") else "right")
    for r in reports:
        table.add_row(
            str(r.bot),
            r.room_id or "-",
            r.style,
            _fmt(r.rtt_ms),
            _fmt(percentile(r.input_to_snapshot_ms, 99)),
            str(r.snapshots),
            str(r.corrections),
            f"{r.max_error:g}",
            str(r.disconnects),
            "yes" if r.kicked else "",
            (r.error or "")[:40],
        )
    table.add_section()
    table.add_row(
        "all",
        "",
        "",
        _fmt(summary["rtt_ms_p50"]) + " p50",
        _fmt(summary["input_to_snapshot_ms_p99"]),
        str(summary["snapshots"]),
        str(summary["corrections"]),
        f"{summary['max_prediction_error']:g}",
        str(summary["disconnects"]),
        str(summary["kicked"]),
        f"{summary['join_failures']} join failures",
    )
    return table


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags astranet-bots and astranet-loadtest share."""
    parser.add_argument(
        "--game",
        default=DEFAULT_GAME,
        help=f"MODULE:ATTR of the game the server plays (default {DEFAULT_GAME}); its package's"
        " bot_kit plays it",
    )
    parser.add_argument("--region", default=region_from_env())
    parser.add_argument("--game-mode", default="coop")
    parser.add_argument("--rooms", type=_positive(int), default=1, help="rooms of 4 bots")
    parser.add_argument(
        "--duration",
        type=_positive(float),
        default=10.0,
        help="seconds of play once every bot joined",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="bot processes (0: one per core, at most one per room)",
    )
    parser.add_argument(
        "--fps", type=_positive(float), default=30.0, help="frames per second each bot steps"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--lite",
        action="store_true",
        help="LiteBots: real protocol traffic, no prediction (capacity runs)",
    )
    parser.add_argument(
        "--input-pacing",
        choices=("on", "off"),
        default="on",
        help="time inputs to the server tick (on, the client's default) or send them at the "
        "bots' own frame phase (off)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def fleet_config(args: argparse.Namespace, url: str) -> FleetConfig:
    return FleetConfig(
        url=url,
        game=args.game,
        region=args.region,
        game_mode=args.game_mode,
        rooms=args.rooms,
        duration_s=args.duration,
        workers=args.workers,
        fps=args.fps,
        seed=args.seed,
        lite=args.lite,
        input_pacing=args.input_pacing == "on",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="astranet-bots", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("AW_WS_URL", "ws://127.0.0.1:8788"))
    add_fleet_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    err = Console(stderr=True)
    config = fleet_config(args, args.url)
    err.print(
        f"astranet-bots: {config.rooms} rooms x {BOTS_PER_ROOM} bots on"
        f" {config.worker_count()} workers -> {config.url}"
    )
    try:
        result = run_fleet(config)
    except KeyboardInterrupt:
        return EXIT_DEGRADED
    summary = summarise(result, config.rooms)
    if args.json:
        print(
            json.dumps(
                {
                    "summary": summary,
                    "bots": bot_rows(result.reports),
                    "workers": [asdict(w) for w in result.workers],
                }
            )
        )
    else:
        Console(width=160).print(render_table(result.reports, summary))
    return exit_status(summary)


if __name__ == "__main__":
    sys.exit(main())
