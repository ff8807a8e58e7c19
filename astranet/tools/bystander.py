"""A well-behaved bystander that measures what an attack costs *other* players.

``python -m astranet.tools.bystander --url ws://127.0.0.1:8788 --seconds 5`` joins a room of its
own (region ``--region``, game mode ``--game-mode``, default ``bystander``), acks every
snapshot, sends a ``Ping`` every 100 ms, and after a ``--warmup`` prints one JSON line:
``{"snapshots", "rate_per_s", "max_gap_ms", "p99_gap_ms", "rtt_p50_ms", "rtt_p99_ms",
"close_code"}`` over the measured window. It runs as its own process so an attacker in the
test process cannot steal its CPU time (what it measures is the server, not its neighbours).

Used by tests/hostile/ (WIRE rule 6 / A4: bystanders keep >= 28 snapshots/s, max gap < 250 ms)
and benchmarks/abuse.py. Benchmark: this is the measuring instrument.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from astranet.net.messages import (
    Ack,
    ErrorMessage,
    FindOrCreate,
    Hello,
    JoinAccepted,
    Ping,
    Pong,
    Snapshot,
    decode_server_message,
    encode,
)

__all__ = ["BystanderReport", "main", "measure"]

PING_INTERVAL_S = 0.1
JOIN_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class BystanderReport:
    snapshots: int
    seconds: float
    rate_per_s: float
    max_gap_ms: float
    p99_gap_ms: float
    rtt_p50_ms: float
    rtt_p99_ms: float
    close_code: int | None

    def meets(self, min_rate: float = 28.0, max_gap_ms: float = 250.0) -> bool:
        return self.rate_per_s >= min_rate and self.max_gap_ms < max_gap_ms


async def measure(
    url: str, seconds: float, *, warmup_s: float = 0.5, region: str = "eu-central",
    game_mode: str = "bystander", token: str | None = None,
) -> BystanderReport:  # fmt: skip
    """Join, warm up, then measure snapshot arrivals and ping RTTs for ``seconds``."""
    async with connect(url, compression=None, max_size=None, open_timeout=JOIN_TIMEOUT_S) as ws:
        await ws.send(encode(Hello(1, token=token)))
        await ws.send(encode(FindOrCreate(region, game_mode, 1)))
        async with asyncio.timeout(JOIN_TIMEOUT_S):
            while True:
                message = decode_server_message(await ws.recv(), max_bytes=1 << 20)
                if isinstance(message, ErrorMessage):
                    raise SystemExit(f"bystander refused: {message.code}: {message.message}")
                if isinstance(message, JoinAccepted):
                    break
        loop = asyncio.get_running_loop()
        start = loop.time() + warmup_s
        end = start + seconds
        arrivals: list[float] = []
        rtts_ms: list[float] = []
        sent: dict[int, float] = {}

        async def pinger() -> None:
            nonce = 0
            while loop.time() < end:
                nonce += 1
                sent[nonce] = time.perf_counter()
                await ws.send(encode(Ping(nonce, time.time_ns() // 1_000_000)))
                await asyncio.sleep(PING_INTERVAL_S)  # a pacing interval, not synchronisation

        ping_task = asyncio.create_task(pinger())
        close_code: int | None = None
        try:
            while (now := loop.time()) < end:
                try:
                    async with asyncio.timeout(end - now):
                        data = await ws.recv()
                except TimeoutError:
                    break
                message = decode_server_message(data, max_bytes=1 << 20)
                if isinstance(message, Snapshot):
                    if loop.time() >= start:
                        arrivals.append(loop.time())
                    await ws.send(encode(Ack(message.id)))
                elif isinstance(message, Pong) and message.nonce in sent:
                    rtt = (time.perf_counter() - sent.pop(message.nonce)) * 1000
                    if loop.time() >= start:
                        rtts_ms.append(rtt)
        except ConnectionClosed:
            close_code = ws.close_code
        finally:
            ping_task.cancel()
    window = np.array([start, *arrivals, end])
    gaps_ms = np.diff(window) * 1000
    rtts = np.array(rtts_ms) if rtts_ms else np.array([float("nan")])
    return BystanderReport(
        snapshots=len(arrivals),
        seconds=seconds,
        rate_per_s=len(arrivals) / seconds,
        max_gap_ms=float(gaps_ms.max()),
        p99_gap_ms=float(np.percentile(gaps_ms, 99)),
        rtt_p50_ms=float(np.percentile(rtts, 50)),
        rtt_p99_ms=float(np.percentile(rtts, 99)),
        close_code=close_code,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="astranet-bystander", description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--region", default="eu-central")
    parser.add_argument("--game-mode", default="bystander")
    parser.add_argument("--token", default=None)
    args = parser.parse_args(argv)
    report = asyncio.run(
        measure(
            args.url,
            args.seconds,
            warmup_s=args.warmup,
            region=args.region,
            game_mode=args.game_mode,
            token=args.token,
        )
    )
    print(json.dumps(asdict(report)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
