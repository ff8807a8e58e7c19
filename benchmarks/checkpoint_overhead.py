"""Checkpoint overhead: server tick duration with periodic SQLite checkpoints on vs off.

Question (issue 6): does checkpointing every second keep the tick loop off the disk? Goal:
tick p99 with ``--checkpoint-interval 1`` within 10 % of checkpoints off.

Scenario: an in-process :class:`GameServer` (real TickLoop at ``--tick-hz``, real
:class:`StoragePersistence` on a temporary SQLite file) with ``--rooms`` rooms of the cubes game
(``--entities`` scenery cubes, 10 % moving) and 4 seated players per room, each pushing one
input per tick (no sockets: this measures the tick, not the network; see
benchmarks/server_load.py for the socket-level load test). Every tick's duration is timed
exactly with ``perf_counter`` around ``GameServer._step_all`` (the /metrics histogram is too
coarse for a 10 % comparison). Modes alternate (off, on, off, on, ...) for ``--repeat`` pairs
so drift on this shared machine hits both equally; "off" still persists rooms and players, it
only never checkpoints periodically.

What "on" costs the loop: ``export_state`` + the writer's copy of each room's columns on the
checkpoint tick; encoding and the SQLite transaction run on the writer thread (which competes
for the GIL only while encoding, sqlite3 releases it during I/O).

Usage::

    .venv/bin/python benchmarks/checkpoint_overhead.py --rooms 25 --entities 1000 \\
        --duration 10 --repeat 3 [--json]

Results: docs/benchmarks.md, section "Checkpoint overhead".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from astranet.examples.cubes import Cubes, encode_input
from astranet.replication import EncodedSnapshot
from astranet.server.app import GameServer
from astranet.server.config import parse_config
from astranet.server.matchmaking import new_room_id
from astranet.server.persistence import open_sqlite_persistence
from astranet.server.room import Player
from astranet.server.roomhost import RoomHost

PLAYERS_PER_ROOM = 4
WARMUP_S = 2.0  # first ticks include room creation and allocator growth
MAX_TICKS = 1_000_000  # bound on recorded durations per run


class Listener:
    """Stands in for a player's connected session: the room steps only rooms with someone
    connected (WIRE A4); this one acks every snapshot it is offered at once (a client on
    loopback), so the room encodes deltas against fresh bases as for real clients."""

    wants_events = False

    def __init__(self, player: Player) -> None:
        self.player = player

    def offer_snapshot(self, snapshot: EncodedSnapshot, last_input_seq: int | None) -> None:
        self.player.baseline.ack(snapshot.id)


class TickRecorder:
    """Wraps the server's tick (``RoomHost.step_all``): feeds every player an input, then
    records the tick's wall time and the loop thread's CPU time."""

    def __init__(self, host: RoomHost) -> None:
        self.host = host
        self.durations_s = np.zeros(0)
        self.cpu_s = np.zeros(0)
        self._recording = False
        self._recorded = 0
        self._seq = 0
        self._blob = encode_input(0.3, -0.2)
        self._step = host.ticker._step  # the TickLoop calls it with the loop's tick
        host.ticker._step = self.step

    def record(self, max_ticks: int) -> None:
        self.durations_s = np.zeros(max_ticks)
        self.cpu_s = np.zeros(max_ticks)
        self._recorded = 0
        self._recording = True

    def recorded(self) -> tuple[np.ndarray, np.ndarray]:
        """(wall seconds, loop-thread CPU seconds) of each recorded tick."""
        self._recording = False
        return self.durations_s[: self._recorded], self.cpu_s[: self._recorded]

    def step(self, loop_tick: int) -> None:
        started, cpu_started = time.perf_counter(), time.thread_time()
        self._seq += 1
        for room in self.host.rooms.values():
            for player in room.players.values():
                player.inputs.push(self._seq, self._blob)
        self._step(loop_tick)
        if self._recording and self._recorded < len(self.durations_s):
            self.durations_s[self._recorded] = time.perf_counter() - started
            self.cpu_s[self._recorded] = time.thread_time() - cpu_started
            self._recorded += 1


@dataclass(frozen=True, slots=True)
class ModeResult:
    mode: str
    ticks: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    cpu_mean_ms: float  # the loop thread's own CPU time: what checkpointing costs it directly
    checkpoints_written: int


async def run_once(
    db: Path, *, checkpoints_on: bool, rooms: int, entities: int, duration_s: float, tick_hz: int
) -> tuple[np.ndarray, np.ndarray, int]:
    config = parse_config(
        [
            "--ws-port",
            "0",
            "--http-port",
            "0",
            "--db",
            str(db),
            "--tick-hz",
            str(tick_hz),
            "--log-level",
            "warning",
        ],
        {},
    )
    persistence = await open_sqlite_persistence(
        db, checkpoint_interval=1.0 if checkpoints_on else 0.0
    )
    server = GameServer(
        config, Cubes(entities=entities, moving_fraction=0.1), persistence=persistence
    )
    recorder = TickRecorder(server.host)
    await server.start()
    try:
        for _ in range(rooms):
            room = server.host.ensure_room_exists(new_room_id(), "us-east", "bench")
            for seat in range(PLAYERS_PER_ROOM):
                player = room.add_player(f"{room.room_id}-{seat}", bytes(32))
                player.session = Listener(player)  # type: ignore[assignment]
                persistence.player_joined(room, player)
        await asyncio.sleep(WARMUP_S)
        recorder.record(min(MAX_TICKS, int(duration_s * tick_hz * 2) + 10))
        await asyncio.sleep(duration_s)
        durations, cpu = recorder.recorded()
    finally:
        await server.shutdown()
    return durations, cpu, persistence.writer.checkpoints_written


def summarise(
    mode: str, durations_s: np.ndarray, cpu_s: np.ndarray, checkpoints: int
) -> ModeResult:
    ms = durations_s * 1000.0
    return ModeResult(
        mode,
        len(ms),
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 99)),
        float(ms.max()),
        float(ms.mean()),
        float(cpu_s.mean() * 1000.0),
        checkpoints,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=25)
    parser.add_argument("--entities", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--repeat", type=int, default=3, help="off/on pairs")
    parser.add_argument("--tick-hz", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    runs: dict[str, list[np.ndarray]] = {"off": [], "on": []}
    cpu: dict[str, list[np.ndarray]] = {"off": [], "on": []}
    written = {"off": 0, "on": 0}
    with tempfile.TemporaryDirectory() as folder:
        for pair in range(args.repeat):
            for mode in ("off", "on"):
                db = Path(folder) / f"{mode}-{pair}.db"
                durations, cpu_s, checkpoints = asyncio.run(
                    run_once(
                        db,
                        checkpoints_on=mode == "on",
                        rooms=args.rooms,
                        entities=args.entities,
                        duration_s=args.duration,
                        tick_hz=args.tick_hz,
                    )
                )
                runs[mode].append(durations)
                cpu[mode].append(cpu_s)
                written[mode] += checkpoints
    results = [
        summarise(mode, np.concatenate(runs[mode]), np.concatenate(cpu[mode]), written[mode])
        for mode in runs
    ]
    off, on = results
    ratio = on.p99_ms / off.p99_ms
    if args.json:
        print(
            json.dumps(
                {"results": [asdict(r) for r in results], "p99_ratio": ratio, "args": vars(args)},
                indent=2,
            )
        )
        return
    print(
        f"{args.rooms} rooms x {PLAYERS_PER_ROOM} players, cubes N={args.entities}, "
        f"{args.tick_hz} Hz, {args.repeat} x {args.duration:g} s per mode"
    )
    print(
        f"{'mode':<5} {'ticks':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'mean ms':>8} "
        f"{'cpu ms':>8} {'checkpoints':>11}"
    )
    for r in results:
        print(
            f"{r.mode:<5} {r.ticks:>6} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f} {r.max_ms:>8.3f} "
            f"{r.mean_ms:>8.3f} {r.cpu_mean_ms:>8.3f} {r.checkpoints_written:>11}"
        )
    print(f"p99 on/off = {ratio:.3f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
