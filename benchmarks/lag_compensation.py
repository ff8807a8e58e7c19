"""Lag compensation: hit rate of shots aimed at what the client draws, with and without rewind.

An in-process server runs a co-op-like *gallery*: the co-op game's players, and ``--targets``
drones circling the arena centre at the co-op drone speed (5 units/s, tangential to the
shooters, the hard case for latency). ``--clients`` bot clients (the library's ClientWorld:
prediction, interpolation, views stated in signed InputFrames) play through the link
conditioner at ``--rtt`` ms (half each way, ``--jitter`` ms jitter). Each bot stands still and,
whenever its weapon is ready, aims at a drone *as its screen shows it* and fires.

For every shot the server evaluates the same coop hitscan twice, side by side:
``hit_rate`` against the drones rewound to the client's view (``sim.rewind(sim.view_tick)``,
what the co-op game does) and ``hit_rate_uncompensated`` against the drones where the server
has them when the input arrives. ``rewind_us`` is the median cost of one ``sim.rewind``.
Figures are medians over ``--repeat`` runs.

    .venv/bin/python benchmarks/lag_compensation.py [--rtt 150] [--seconds 10] [--repeat 3]
        [--clients 2] [--targets 24] [--json]

Goal (issue 15): hit_rate >= 0.95 at 150 ms RTT, visibly lower without compensation.
Results: docs/benchmarks.md, section "Lag compensation".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass, field

import esper
import numpy as np

from astranet.client import ClientOptions, ClientWorld, GameClient, run_frames
from astranet.examples.coop import DRONE, encode_input, fire_ready
from astranet.examples.coop.components import snap_pos
from astranet.examples.coop.game import Coop
from astranet.examples.coop.input import Command
from astranet.examples.coop.sim import DRONE_SPEED, HIT_RADIUS, hitscan, step_avatar
from astranet.game import SimContext
from astranet.net.linkconditioner import LinkConditioner, LinkProfile
from astranet.server.app import GameServer
from astranet.server.config import parse_config
from astranet.systems import Stage, add_system
from astranet.systems.interpolation import RenderView


@dataclass
class ShotStats:
    shots: int = 0
    shots_without_view: int = 0
    hits: int = 0
    hits_uncompensated: int = 0
    rewind_s: list[float] = field(default_factory=list)


class CircleSystem(esper.Processor):
    """Drones circle the centre: radius 14-24, alternate directions, DRONE_SPEED tangential."""

    def __init__(self, count: int) -> None:
        k = np.arange(count)
        self.radius = 14.0 + 10.0 * (k % 5) / 4
        self.phase = 2 * math.pi * k / count
        self.omega = np.where(k % 2 == 0, 1.0, -1.0) * DRONE_SPEED / self.radius

    def process(self, sim: SimContext) -> None:
        store = sim.store
        drones = np.flatnonzero(store["Body.kind"] == DRONE)
        angle = self.phase + self.omega * sim.tick * sim.dt_s
        circle = np.stack([np.cos(angle), np.sin(angle)], axis=1) * self.radius[:, None]
        store["Body.pos"][drones] = snap_pos(circle[: len(drones)])


class Gallery(Coop):
    """Coop players against circling drones that never die; every shot is judged twice."""

    name = "gallery"

    def __init__(self, targets: int) -> None:
        self.targets = targets
        self.stats = ShotStats()

    def setup(self, sim: SimContext) -> None:
        sim.store.spawn(self.targets, Body__kind=DRONE, Health__hp=10)
        add_system(CircleSystem(self.targets), Stage.SIMULATE)

    def apply_input(self, sim: SimContext, net_id: int, command: Command) -> None:
        fired = step_avatar(sim.store, net_id, command, sim.dt_s)
        if not (fired and sim.authoritative):
            return
        stats = self.stats
        if sim.view_tick is None:
            stats.shots_without_view += 1
            return
        store = sim.store
        row = store.rows([net_id])
        origin = store["Body.pos"][row][0]
        aim = float(store["Body.heading"][row][0])
        started = time.perf_counter()
        view = sim.rewind(sim.view_tick)
        stats.rewind_s.append(time.perf_counter() - started)
        seen = view.field("Body.pos")[view.field("Body.kind")[:, 0] == DRONE]
        now = store["Body.pos"][store["Body.kind"] == DRONE]
        stats.shots += 1
        stats.hits += hitscan(origin, aim, seen, HIT_RADIUS) >= 0
        stats.hits_uncompensated += hitscan(origin, aim, now, HIT_RADIUS) >= 0


class Marksman:
    """Bot input: stand still; when the weapon is ready, fire at a drone where it is drawn."""

    def __init__(self, world_ref: list[ClientWorld], seed: int) -> None:
        self.world_ref = world_ref
        self.rng = np.random.default_rng(seed)

    def __call__(self) -> bytes:
        world = self.world_ref[0] if self.world_ref else None
        if world is None or world.local.net_id is None or not world.local.ready:
            return encode_input(0.0, 0.0)
        view: RenderView = world.view
        me = view.row(world.local.net_id)
        drones = np.flatnonzero(view.field("Body.kind")[:, 0] == DRONE)
        if me is None or len(drones) == 0 or view.render_time_ms is None:
            return encode_input(0.0, 0.0)
        if not fire_ready(world.local.sim.store, world.local.net_id):
            return encode_input(0.0, 0.0)
        origin = me[view.layout.slices["Body.pos"]]
        target = view.field("Body.pos")[drones[self.rng.integers(len(drones))]]
        aim = math.atan2(target[1] - origin[1], target[0] - origin[0])
        return encode_input(0.0, 0.0, aim, fire=True)


@dataclass
class RunResult:
    rtt_ms: float
    shots: int
    shots_without_view: int
    hit_rate: float
    hit_rate_uncompensated: float
    rewind_us: float


async def measure(args: argparse.Namespace, seed: int) -> RunResult:
    config = parse_config(["--host", "127.0.0.1", "--ws-port", "0", "--http-port", "0"], {})
    game = Gallery(args.targets)
    server = GameServer(config, game)
    await server.start()
    link = LinkProfile(latency_ms=args.rtt / 2, jitter_ms=args.jitter)
    conditioner = LinkConditioner("127.0.0.1", server.ws_port or 0, link, link, seed=seed)
    port = await conditioner.start()
    clients: list[tuple[GameClient, ClientWorld]] = []
    try:
        for k in range(args.clients):
            client = GameClient(ClientOptions(url=f"ws://127.0.0.1:{port}", seed=seed * 10 + k))
            accepted = await client.connect()
            ref: list[ClientWorld] = []
            bot = Marksman(ref, seed * 10 + k)
            world = ClientWorld(Gallery(args.targets), client, bot, tick_hz=accepted.tick_hz)
            ref.append(world)
            clients.append((client, world))
        await asyncio.gather(*(run_frames(w, duration_s=args.seconds) for _, w in clients))
        rtts = [c.clock_estimate(c.now_ms()).rtt_ms or 0.0 for c, _ in clients]
        stats = game.stats
        return RunResult(
            rtt_ms=statistics.fmean(rtts),
            shots=stats.shots,
            shots_without_view=stats.shots_without_view,
            hit_rate=stats.hits / stats.shots if stats.shots else math.nan,
            hit_rate_uncompensated=(
                stats.hits_uncompensated / stats.shots if stats.shots else math.nan
            ),
            rewind_us=statistics.median(stats.rewind_s) * 1e6 if stats.rewind_s else math.nan,
        )
    finally:
        for client, world in clients:
            await client.close()
            world.close()
        await conditioner.close()
        await server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rtt", type=float, default=150.0, help="ms (half each way)")
    parser.add_argument("--jitter", type=float, default=5.0, help="ms each way")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--targets", type=int, default=24)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    runs = [asyncio.run(measure(args, seed)) for seed in range(1, args.repeat + 1)]
    for run in runs:
        print(
            f"RTT {run.rtt_ms:.0f} ms: {run.shots} shots (+{run.shots_without_view} before the"
            f" first view), hit rate {run.hit_rate:.1%} compensated,"
            f" {run.hit_rate_uncompensated:.1%} uncompensated, rewind {run.rewind_us:.0f} us"
        )
    summary = {
        "rtt_ms": statistics.median(r.rtt_ms for r in runs),
        "hit_rate": statistics.median(r.hit_rate for r in runs),
        "hit_rate_uncompensated": statistics.median(r.hit_rate_uncompensated for r in runs),
        "rewind_us": statistics.median(r.rewind_us for r in runs),
        "shots": sum(r.shots for r in runs),
        "repeat": len(runs),
        "runs": [asdict(r) for r in runs],
    }
    print(
        f"median of {len(runs)}: RTT {summary['rtt_ms']:.0f} ms, hit rate"
        f" {summary['hit_rate']:.1%} vs {summary['hit_rate_uncompensated']:.1%} uncompensated,"
        f" rewind {summary['rewind_us']:.0f} us"
    )
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
