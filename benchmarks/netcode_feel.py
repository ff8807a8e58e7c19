"""Netcode feel: prediction error, corrections, starvation and input-to-display delay vs RTT.

For each RTT (default 0, 50, 150, 300 ms; the link conditioner adds RTT/2 latency and up to
``--jitter`` ms jitter each way, none at RTT 0) an in-process server runs a *fenced* dots game
(the server clamps x <= FENCE_X; clients predict with plain dots, so walking into the fence is
a misprediction the server corrects). Two bot clients play through the conditioner:

* **A** walks a square: a 90-degree turn every 30 inputs (1 s), so every lap pushes into the
  fence (a correction) and every turn is an input whose display we can time;
* **B** random-walks (the demo bot).

Measured per RTT:

* prediction error: the largest |server - predicted| at each reconciliation (units; dots
  moves 1/3 unit per input), mean and max over both clients;
* corrections: rewinds, and the mean jump a rewind made to the predicted avatar (the smoother
  spreads it over 100 ms, so this is the size, not a visible snap);
* starvations: interpolation buffer starvation episodes (both clients);
* input-to-display delay: from A's turn input to the first frame whose displayed motion of A
  goes the new way — on A's own screen (prediction: the same frame) and on B's screen
  (A's upstream, the server's tick, B's downstream and B's interpolation delay). Both clients
  live in one process, so one monotonic clock times both ends.

    .venv/bin/python benchmarks/netcode_feel.py [--seconds 8] [--rtts 0,50,150,300]
        [--jitter 10] [--plot docs/img/netcode_feel.png] [--json]

Results and the plot: docs/benchmarks.md, section "Netcode feel (client)".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from astranet.client import ClientOptions, ClientWorld, GameClient, run_frames
from astranet.client.demo import BotInput
from astranet.examples.dots import Dots, encode_input, snap
from astranet.game import SimContext
from astranet.net.linkconditioner import LinkConditioner, LinkProfile
from astranet.server.app import GameServer
from astranet.server.config import parse_config
from astranet.systems.interpolation import RenderView

FENCE_X = 6.0
TURN_EVERY = 30  # inputs per leg of the square: 1 s at 30 Hz
MATCH_COS = math.cos(math.radians(30))  # displayed motion within 30 degrees of the heading


class FencedDots(Dots):
    """Server-side dots with a fence at x = FENCE_X the clients do not know about."""

    def spawn_player(self, sim: SimContext, player_id: str) -> int:
        net_id = super().spawn_player(sim, player_id)
        sim.store["Body.pos"][sim.store.rows([net_id])] = 0.0
        return net_id

    def apply_input(self, sim: SimContext, net_id: int, command: tuple[int, int]) -> None:
        super().apply_input(sim, net_id, command)
        rows = sim.store.rows([net_id])
        pos = sim.store["Body.pos"]
        pos[rows, 0] = snap(np.minimum(pos[rows, 0], FENCE_X))


class SquareWalker:
    """Bot A: a quarter turn every TURN_EVERY inputs; remembers when each turn was input."""

    def __init__(self, clock_ms: Callable[[], float]) -> None:
        self.clock_ms = clock_ms
        self.count = 0
        self.turns: list[tuple[float, np.ndarray]] = []  # (client ms, unit heading)

    def __call__(self) -> bytes:
        leg = self.count // TURN_EVERY
        heading = np.array([math.cos(leg * math.pi / 2), math.sin(leg * math.pi / 2)])
        if self.count % TURN_EVERY == 0 and self.count:
            self.turns.append((self.clock_ms(), heading))
        self.count += 1
        return encode_input(0.98 * heading[0], 0.98 * heading[1])


class TurnWatcher:
    """On one screen, times each of A's turns until A is displayed moving the new way."""

    def __init__(self, walker: SquareWalker, clock_ms: Callable[[], float]) -> None:
        self.walker = walker
        self.clock_ms = clock_ms
        self.entity: int | None = None
        self.previous: np.ndarray | None = None
        self.resolved = 0
        self.delays_ms: list[float] = []

    def __call__(self, view: RenderView) -> None:
        row = view.row(self.entity) if self.entity is not None else None
        if row is None:
            return
        pos = row[view.layout.slices["Body.pos"]].copy()
        previous, self.previous = self.previous, pos
        if previous is None or self.resolved >= len(self.walker.turns):
            return
        moved = pos - previous
        length = float(np.hypot(*moved))
        turned_at, heading = self.walker.turns[self.resolved]
        if length > 1e-9 and float(moved @ heading) / length >= MATCH_COS:
            self.delays_ms.append(self.clock_ms() - turned_at)
            self.resolved += 1


@dataclass
class FeelResult:
    rtt_ms: float
    measured_rtt_ms: float
    compared: int
    mean_error: float
    max_error: float
    corrections: int
    mean_correction: float
    starvations: int
    local_delay_ms: float
    remote_delay_ms: float
    turns_timed: int


async def measure(rtt_ms: float, seconds: float, jitter_ms: float) -> FeelResult:
    config = parse_config(["--host", "127.0.0.1", "--ws-port", "0", "--http-port", "0"], {})
    server = GameServer(config, FencedDots())
    await server.start()
    link = LinkProfile(latency_ms=rtt_ms / 2, jitter_ms=jitter_ms if rtt_ms else 0.0)
    conditioner = LinkConditioner("127.0.0.1", server.ws_port or 0, link, link, seed=1)
    port = await conditioner.start()
    plain = Dots()  # clients predict with plain dots: they do not know the fence
    clients: list[tuple[GameClient, ClientWorld]] = []
    try:
        for seed in (1, 2):
            client = GameClient(ClientOptions(url=f"ws://127.0.0.1:{port}", seed=seed))
            accepted = await client.connect()
            source = SquareWalker(client.now_ms) if seed == 1 else BotInput(encode_input, seed=seed)
            world = ClientWorld(plain, client, source, tick_hz=accepted.tick_hz)
            clients.append((client, world))
        (client_a, world_a), (client_b, world_b) = clients
        walker = world_a.prediction.input_source
        assert isinstance(walker, SquareWalker)
        on_a, on_b = TurnWatcher(walker, client_a.now_ms), TurnWatcher(walker, client_b.now_ms)
        on_a.entity = on_b.entity = client_a.conn.entity
        await asyncio.gather(
            run_frames(world_a, duration_s=seconds, on_frame=on_a),
            run_frames(world_b, duration_s=seconds, on_frame=on_b),
        )
        errors = [e for _, w in clients for e in w.reconciliation.stats.errors]
        jumps = [c for _, w in clients for c in w.reconciliation.stats.corrections]
        rtts = [c.clock_estimate(c.now_ms()).rtt_ms or 0.0 for c, _ in clients]
        return FeelResult(
            rtt_ms=rtt_ms,
            measured_rtt_ms=statistics.fmean(rtts),
            compared=len(errors),
            mean_error=statistics.fmean(errors) if errors else 0.0,
            max_error=max(errors, default=0.0),
            corrections=len(jumps),
            mean_correction=statistics.fmean(jumps) if jumps else 0.0,
            starvations=sum(w.interpolation.starvations for _, w in clients),
            local_delay_ms=statistics.median(on_a.delays_ms) if on_a.delays_ms else math.nan,
            remote_delay_ms=statistics.median(on_b.delays_ms) if on_b.delays_ms else math.nan,
            turns_timed=len(on_b.delays_ms),
        )
    finally:
        for client, world in clients:
            await client.close()
            world.close()
        await conditioner.close()
        await server.shutdown()


def table(results: list[FeelResult]) -> str:
    lines = [
        "| RTT (measured) | prediction error mean / max | corrections (mean jump) |"
        " starvations | input-to-display: own / other screen |",
        "|---|---:|---:|---:|---:|",
    ]
    lines.extend(
        f"| {r.rtt_ms:.0f} ms ({r.measured_rtt_ms:.0f}) | {r.mean_error:.3f} / "
        f"{r.max_error:.2f} u | {r.corrections} ({r.mean_correction:.2f} u) |"
        f" {r.starvations} | {r.local_delay_ms:.0f} / {r.remote_delay_ms:.0f} ms"
        f" ({r.turns_timed} turns) |"
        for r in results
    )
    return "\n".join(lines)


def plot(results: list[FeelResult], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rtts = [r.rtt_ms for r in results]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    panels = [
        (
            "prediction error (units)",
            [("mean", [r.mean_error for r in results]), ("max", [r.max_error for r in results])],
        ),
        ("correction jump (units)", [("mean", [r.mean_correction for r in results])]),
        ("starvation episodes", [("both clients", [r.starvations for r in results])]),
        (
            "input-to-display (ms)",
            [
                ("own screen", [r.local_delay_ms for r in results]),
                ("other screen", [r.remote_delay_ms for r in results]),
            ],
        ),
    ]
    for axis, (title, series) in zip(axes, panels, strict=True):
        for label, values in series:
            axis.plot(rtts, values, marker="o", label=label)
        axis.set_title(title)
        axis.set_xlabel("RTT (ms)")
        axis.set_xticks(rtts)
        top = max((v for _, values in series for v in values if not math.isnan(v)), default=0)
        axis.set_ylim(0, max(1.0, top * 1.15))  # from zero: flat lines must look flat
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    fig.suptitle("astranet netcode feel: fenced dots, 2 bots, link conditioner")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rtts", default="0,50,150,300")
    parser.add_argument("--jitter", type=float, default=10.0, help="ms each way (RTT > 0)")
    parser.add_argument("--plot", default=None, help="write a PNG here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = [
        asyncio.run(measure(float(rtt), args.seconds, args.jitter)) for rtt in args.rtts.split(",")
    ]
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(table(results))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
