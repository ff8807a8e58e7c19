"""Encode time of the payload codec at another commit against this tree's, side by side.

Loads ``astranet/replication/codec.py`` and ``_bits.py`` as they were at ``--base-commit``
(``git show``, into a temporary directory) next to the current codec, builds the cubes
server-load room of benchmarks/wire_bytes.py (N scenery cubes, 10 % moving, 4 circling
avatars) and times ``encode_payload`` for the same snapshot triples (current, base, the one
before) with each codec, alternating, median of ``--rounds`` rounds (each the min of 3): old,
new, and new with predicted deltas. Needs git and the repository's history.

Usage: ``python benchmarks/codec_ab.py [--base-commit 74b6312] [--json]``.
Results: docs/benchmarks.md, section "Snapshot bytes (payload v2)".
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

import esper

from astranet.ecs import ColumnStore
from astranet.examples.cubes import BounceSystem, Cubes, move_avatar
from astranet.game import SimContext
from astranet.replication import SnapshotHistory
from astranet.replication import codec as current
from benchmarks.wire_bytes import _circle

REPO = Path(__file__).resolve().parents[1]


def _old_codec(commit: str, directory: Path):
    for name in ("codec.py", "_bits.py"):
        text = subprocess.run(
            ["git", "show", f"{commit}:astranet/replication/{name}"],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        text = text.replace("from astranet.replication._bits import", "from _old_bits import")
        (directory / ("_old_bits.py" if name == "_bits.py" else "_old_codec.py")).write_text(text)
    sys.path.insert(0, str(directory))
    spec = importlib.util.spec_from_file_location("_old_codec", directory / "_old_codec.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _triples(entities: int, ticks: int = 31):
    esper.switch_world(f"codec_ab_{entities}")
    esper.clear_database()
    game = Cubes(entities, 0.1)
    store = ColumnStore(game.schema)
    sim = SimContext(store, 0, 1 / 30, room_id="AbCd1234")
    game.setup(sim)
    bounce = esper.get_processor(BounceSystem)
    assert bounce is not None
    avatars = [game.spawn_player(sim, f"player-{i}") for i in range(4)]
    history, circle, snaps = SnapshotHistory(store), _circle(), []
    for tick in range(ticks):
        bounce.process(sim)
        for i, net_id in enumerate(avatars):
            move_avatar(store, net_id, circle[(tick + 7 * i) % len(circle)], sim.dt_s)
        snaps.append(history.capture(tick))
    return game.schema, list(zip(snaps[2:], snaps[1:-1], snaps[:-2], strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-commit", default="74b6312")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        old = _old_codec(args.base_commit, Path(tmp))
        for entities in (100, 1000):
            schema, triples = _triples(entities)
            calls = {
                "old": lambda s=schema, t=triples: [old.encode_payload(s, c, b) for c, b, _ in t],
                "new": lambda s=schema, t=triples: [
                    current.encode_payload(s, c, b) for c, b, _ in t
                ],
                "new_predicted": lambda s=schema, t=triples: [
                    current.encode_payload(s, c, b, prev=p) for c, b, p in t
                ],
            }
            times: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(args.rounds):
                for name, call in calls.items():
                    best = min(timeit.repeat(call, number=10, repeat=3))
                    times[name].append(best / 10 / len(triples) * 1e6)
            row = {"entities": entities}
            row |= {f"{k}_us": round(statistics.median(v), 1) for k, v in times.items()}
            results.append(row)
            print(
                f"cubes N={entities}: encode_payload old {row['old_us']} us, new {row['new_us']}"
                f" us ({row['new_us'] / row['old_us']:.2f}x), new predicted "
                f"{row['new_predicted_us']} us ({row['new_predicted_us'] / row['old_us']:.2f}x)"
            )
    if args.json:
        print(json.dumps({"base_commit": args.base_commit, "scenarios": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
