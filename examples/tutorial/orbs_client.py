"""A headless orbs client with prediction and interpolation. Run: python orbs_client.py"""

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from orbs import encode_input, game
from orbs_columns import ORB, steer

from astranet.client import ClientOptions, ClientWorld, GameClient, run_frames
from astranet.errors import ConnectionClosed, ProtocolError
from astranet.systems import RenderView


@dataclass(frozen=True, slots=True)
class Summary:
    """What one session did, for the caller (and the tutorial's test) to check."""

    start: tuple[float, float]
    end: tuple[float, float]
    score: int
    frames: int
    predictions_compared: int  # snapshots whose answer to our input was checked
    predictions_exact: int  # ... and matched our prediction bit for bit


async def play(url: str, duration_s: float = 10.0, out: Callable[[str], None] = print) -> Summary:
    options = ClientOptions(url=url, game_mode="orbs", schema=game.schema.fingerprint)
    client = GameClient(options)
    accepted = await client.connect()  # raises ConnectFailed, or the server's refusal
    me = accepted.entity  # our avatar's net id
    out(f"joined room {accepted.room_id} as entity {me}")
    latest: list[RenderView] = []  # the newest frame's view, read by the input source

    def read_stick() -> bytes:
        """Called by the prediction system once per server tick: our next input."""
        view = latest[-1] if latest else None
        mine = view.row(me) if view is not None and me is not None else None
        if view is None or mine is None:
            return encode_input(0.0, 0.0)
        orbs = view.field("Body.pos")[view.field("Body.kind")[:, 0] == ORB]
        return encode_input(*steer(mine[view.layout.slices["Body.pos"]], orbs))

    # Only positions are smoothed after a correction; a score should jump, not slide.
    world = ClientWorld(
        game, client, read_stick, tick_hz=accepted.tick_hz, smoothed_fields=["Body.pos"]
    )
    seen: list[tuple[float, float, int]] = []  # (x, y, score) of our avatar, one per frame

    def on_frame(view: RenderView) -> None:
        latest[:] = [view]
        mine = view.row(me) if me is not None else None
        if mine is None:
            return  # no snapshot with our avatar yet
        x, y = mine[view.layout.slices["Body.pos"]].tolist()
        score = int(mine[view.layout.slices["Score.points"]][0])
        seen.append((x, y, score))
        if len(seen) % 60 == 0:  # once a second at 60 fps
            rtt = client.clock_estimate(client.now_ms()).rtt_ms or 0.0
            out(f"t={len(seen) / 60:.0f}s me ({x:.1f}, {y:.1f}) score {score} rtt {rtt:.1f} ms")

    try:
        frames = await run_frames(world, duration_s=duration_s, fps=60, on_frame=on_frame)
    finally:
        await client.close()  # Leave: the server frees the seat and closes 1000
        world.close()
    stats = world.reconciliation.stats
    start, end = seen[0] if seen else (0.0, 0.0, 0), seen[-1] if seen else (0.0, 0.0, 0)
    return Summary(start[:2], end[:2], end[2], frames, stats.compared, stats.exact)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Play orbs headless, printing positions.")
    parser.add_argument("--url", default=os.environ.get("AW_WS_URL", "ws://127.0.0.1:8788"))
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to play")
    args = parser.parse_args(argv)
    try:
        summary = asyncio.run(play(args.url, args.duration))
    except (ConnectionClosed, ProtocolError) as exc:  # cannot connect, or join refused
        print(f"orbs_client: {exc}", file=sys.stderr)
        return 2
    print(
        f"done: score {summary.score}, {summary.predictions_exact}/"
        f"{summary.predictions_compared} exact predictions"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
