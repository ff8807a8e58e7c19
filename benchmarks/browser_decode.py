"""The browser client's snapshot decode: a 600-drone co-op delta, JS (Node/V8) vs Python.

Builds a co-op room state with 4 players and 600 drones (MAX_DRONES) spread by
``wave_spawn_positions``, moves every drone one tick with the game's own ``chase``, and encodes
the second snapshot as a delta against the first exactly as the server does
(``encode_payload``: LZ4 frame when smaller). ``benchmarks/js_decode.mjs`` decodes it in Node
(median of --repeats runs after warm-up); the same payload is decoded by the Python reference
(``decode_payload``) side by side. Goal (issue 17): JS decode <= 2 ms.

Usage: ``python benchmarks/browser_decode.py [--repeats 300] [--json]``; needs node >= 20.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from astranet.ecs import ColumnStore
from astranet.examples.coop.components import DRONE, PLAYER, SCHEMA, TEAM
from astranet.examples.coop.sim import MAX_DRONES, chase, drone_speeds, wave_spawn_positions
from astranet.replication.codec import decode_payload, encode_payload
from astranet.replication.snapshot import capture

ROOT = Path(__file__).resolve().parents[1]


def _room() -> tuple[ColumnStore, np.ndarray]:
    store = ColumnStore(SCHEMA)
    store.spawn(1, Body__kind=TEAM, Team__score=1230.0, Team__wave=75.0)
    players = np.array([[-5.0, 0.0], [5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])
    store.spawn(4, Body__kind=PLAYER, Body__pos=players, Health__hp=100.0)
    spawn = wave_spawn_positions(12345, 75, MAX_DRONES)
    ids = store.spawn(MAX_DRONES, Body__kind=DRONE, Body__pos=spawn, Health__hp=9.0)
    return store, ids


def make_cases() -> dict[str, object]:
    store, drone_ids = _room()
    rows = store.rows(drone_ids)
    players = store["Body.pos"][store.rows(store.net_ids[1:5])]
    # A few ticks in, so headings are set; then the measured tick.
    for _ in range(3):
        pos, heading = chase(store["Body.pos"][rows], drone_speeds(drone_ids) / 30, players)
        store["Body.pos"][rows], store["Body.heading"][rows] = pos, heading
    base = capture(store, 1, 100)
    pos, heading = chase(store["Body.pos"][rows], drone_speeds(drone_ids) / 30, players)
    store["Body.pos"][rows], store["Body.heading"][rows] = pos, heading
    current = capture(store, 2, 101)
    base_payload, base_compressed = encode_payload(SCHEMA, base)
    delta, delta_compressed = encode_payload(SCHEMA, current, base)
    raw_delta, _ = encode_payload(SCHEMA, current, base, compress=False)
    full, full_compressed = encode_payload(SCHEMA, current)
    n = len(current.net_ids)
    return {
        "schema": SCHEMA.describe(),
        "base": {"payload": base_payload.hex(), "compressed": base_compressed},
        "cases": [
            {
                "name": "delta_600",
                "payload": delta.hex(),
                "compressed": delta_compressed,
                "delta": True,
                "rows": n,
            },
            {
                "name": "delta_600_raw",
                "payload": raw_delta.hex(),
                "compressed": False,
                "delta": True,
                "rows": n,
            },
            {
                "name": "full_600",
                "payload": full.hex(),
                "compressed": full_compressed,
                "delta": False,
                "rows": n,
            },
        ],
        "_python": (base, current, delta, delta_compressed, full, full_compressed),
    }


def python_decode_ms(cases: dict[str, object], repeats: int) -> dict[str, float]:
    base, _current, delta, delta_c, full, full_c = cases["_python"]  # type: ignore[misc]
    out = {}
    for name, payload, compressed, against in (
        ("delta_600", delta, delta_c, base),
        ("full_600", full, full_c, None),
    ):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            decode_payload(SCHEMA, payload, compressed, against)
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = statistics.median(times)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="browser_decode")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args(argv)
    node = shutil.which("node")
    if node is None:
        print("browser_decode: node (>= 20) is needed", file=sys.stderr)
        return 2
    cases = make_cases()
    python = python_decode_ms(cases, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cases.json"
        path.write_text(json.dumps({k: v for k, v in cases.items() if not k.startswith("_")}))
        result = subprocess.run(
            [
                node,
                str(ROOT / "benchmarks/js_decode.mjs"),
                str(path),
                "--repeats",
                str(args.repeats),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
    js = json.loads(result.stdout.strip().splitlines()[-1])
    for name, r in js["results"].items():
        py = python.get(name)
        py_text = f"  python decode {py:.3f} ms" if py is not None else ""
        print(
            f"{name:14s} {r['bytes']:6d} B  js decode {r['decode_ms']:.3f} ms"
            f"  js decode+dequantize {r['decode_dequantize_ms']:.3f} ms{py_text}"
        )
    goal = js["results"]["delta_600"]["decode_ms"] <= 2.0
    print(f"goal: 600-drone delta decode <= 2 ms in JS: {'met' if goal else 'MISSED'}")
    if args.json:
        print(
            json.dumps(
                {
                    "node": js["node"],
                    "repeats": args.repeats,
                    "js": js["results"],
                    "python_decode_ms": python,
                    "goal_met": goal,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
