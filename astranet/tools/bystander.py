"""A well-behaved bystander that measures what an attack costs *other* players.

``python -m astranet.tools.bystander --url ws://127.0.0.1:8788 --seconds 5`` joins a room of its
own (region ``--region``, game mode ``--game-mode``, default ``bystander``; ``--party-size N``
holds N - 1 more seats for whoever has the party token), acks every snapshot, sends a ``Ping``
every 100 ms, and prints two JSON lines. The first, once it joined: ``{"room_id",
"party_token"}`` (hex, or null for a party of one) and the measured window ``"window":
[from, until]`` in ``time.monotonic()`` seconds -- system-wide on Linux, so another process can
line its own events up with this one's. The last, after the ``--warmup`` and ``--seconds``:
``{"snapshots", "seconds", "rate_per_s", "max_gap_ms", "p99_gap_ms", "rtt_p50_ms",
"rtt_p99_ms", "close_code"}`` over the window, plus with ``--arrivals`` each snapshot's arrival
time (``time.monotonic()``). It runs as its own process so an attacker in the test process
cannot steal its CPU time (what it measures is the server, not its neighbours).

:class:`BystanderProcess` runs it as a child of an asyncio program (the tests' way).
Used by tests/hostile/ (WIRE rule 6 / A4: bystanders keep >= 28 snapshots/s, max gap < 250 ms),
tests/server/integration/test_abuse.py (a victim sharing its room with flooders) and
benchmarks/abuse.py. Benchmark: this is the measuring instrument.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Self

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from astranet.errors import AstranetError
from astranet.net.messages import (
    Ack,
    ErrorMessage,
    FindOrCreate,
    Hello,
    JoinAccepted,
    MatchResult,
    Ping,
    Pong,
    Snapshot,
    decode_server_message,
    encode,
)

__all__ = ["BystanderFailed", "BystanderProcess", "BystanderReport", "Joined", "main", "measure"]

PING_INTERVAL_S = 0.1
JOIN_TIMEOUT_S = 10.0
EXIT_SLACK_S = 30.0  # BystanderProcess: a child past warm-up + window + this has hung


class BystanderFailed(AstranetError):
    """The bystander process exited non-zero or printed no line where one was due."""


@dataclass(frozen=True, slots=True)
class Joined:
    """The bystander's first line: its room, the party token and the measured window."""

    room_id: str
    party_token: bytes | None
    window: tuple[float, float]  # time.monotonic() seconds: [from, until)

    def to_json(self) -> str:
        token = None if self.party_token is None else self.party_token.hex()
        return json.dumps({"room_id": self.room_id, "party_token": token, "window": self.window})

    @classmethod
    def from_json(cls, line: str | bytes) -> Self:
        fields = json.loads(line)
        token, (start, end) = fields["party_token"], fields["window"]
        return cls(fields["room_id"], None if token is None else bytes.fromhex(token), (start, end))


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
    arrivals: tuple[float, ...] = field(default=(), repr=False)  # time.monotonic(), --arrivals

    @classmethod
    def from_json(cls, line: str) -> Self:
        fields = json.loads(line)
        return cls(**{**fields, "arrivals": tuple(fields.get("arrivals", ()))})

    def meets(self, min_rate: float = 28.0, max_gap_ms: float = 250.0) -> bool:
        return self.rate_per_s >= min_rate and self.max_gap_ms < max_gap_ms


async def measure(
    url: str, seconds: float, *, warmup_s: float = 0.5, region: str = "eu-central",
    game_mode: str = "bystander", token: str | None = None, party_size: int = 1,
    on_joined: Callable[[Joined], None] = lambda joined: None,
) -> BystanderReport:  # fmt: skip
    """Join, warm up, then measure snapshot arrivals and ping RTTs for ``seconds``.

    ``on_joined`` is called once in the room, before the warm-up (the first JSON line). Times are
    ``time.monotonic()``, which is what asyncio's own loop clock reads.
    """
    async with connect(url, compression=None, max_size=None, open_timeout=JOIN_TIMEOUT_S) as ws:
        await ws.send(encode(Hello(1, token=token)))
        await ws.send(encode(FindOrCreate(region, game_mode, party_size)))
        party_token: bytes | None = None
        async with asyncio.timeout(JOIN_TIMEOUT_S):
            while True:
                message = decode_server_message(await ws.recv(), max_bytes=1 << 20)
                if isinstance(message, ErrorMessage):
                    raise SystemExit(f"bystander refused: {message.code}: {message.message}")
                if isinstance(message, MatchResult):
                    party_token = message.party_token
                if isinstance(message, JoinAccepted):
                    room_id = message.room_id
                    break
        start = time.monotonic() + warmup_s
        end = start + seconds
        on_joined(Joined(room_id, party_token, (start, end)))
        arrivals: list[float] = []
        rtts_ms: list[float] = []
        sent: dict[int, float] = {}

        async def pinger() -> None:
            nonce = 0
            while time.monotonic() < end:
                nonce += 1
                sent[nonce] = time.perf_counter()
                await ws.send(encode(Ping(nonce, time.time_ns() // 1_000_000)))
                await asyncio.sleep(PING_INTERVAL_S)  # a pacing interval, not synchronisation

        ping_task = asyncio.create_task(pinger())
        close_code: int | None = None
        try:
            while (now := time.monotonic()) < end:
                try:
                    async with asyncio.timeout(end - now):
                        data = await ws.recv()
                except TimeoutError:
                    break
                message = decode_server_message(data, max_bytes=1 << 20)
                if isinstance(message, Snapshot):
                    if (now := time.monotonic()) >= start:
                        arrivals.append(now)
                    await ws.send(encode(Ack(message.id)))
                elif isinstance(message, Pong) and message.nonce in sent:
                    rtt = (time.perf_counter() - sent.pop(message.nonce)) * 1000
                    if time.monotonic() >= start:
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
        arrivals=tuple(arrivals),
    )


class BystanderProcess:
    """``python -m astranet.tools.bystander`` as a child of an asyncio program.

    ``async with BystanderProcess(url, seconds, *flags) as bystander:`` starts it (``flags``:
    its other options, e.g. ``--party-size 4``); :meth:`joined` reads its first line,
    :meth:`report` waits for the last (at most warm-up + ``seconds`` + ``EXIT_SLACK_S``); leaving
    the block kills a child still running. A child that fails raises :class:`BystanderFailed`
    with the tail of its stderr.
    """

    def __init__(self, url: str, seconds: float, *flags: str, warmup_s: float = 0.5) -> None:
        self.args = [
            sys.executable, "-m", "astranet.tools.bystander", "--url", url,
            "--seconds", str(seconds), "--warmup", str(warmup_s), *flags,
        ]  # fmt: skip
        self.within_s = JOIN_TIMEOUT_S + warmup_s + seconds + EXIT_SLACK_S
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Self:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def joined(self) -> Joined:
        """The first line: room, party token, window (BystanderFailed if it exits first)."""
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(self.within_s):
            line = await self.proc.stdout.readline()
        if not line:
            await self._exit()
            raise BystanderFailed("bystander exited 0 before it joined")
        return Joined.from_json(line)

    async def report(self) -> BystanderReport:
        """The last line, once the child has measured its window and exited 0."""
        lines = (await self._exit()).strip().splitlines()
        if not lines:
            raise BystanderFailed("bystander exited 0 without a report")
        return BystanderReport.from_json(lines[-1])

    async def _exit(self) -> str:
        """Wait for the exit; the rest of its stdout (BystanderFailed on a non-zero exit)."""
        assert self.proc is not None
        async with asyncio.timeout(self.within_s):
            out, err = await self.proc.communicate()
        if self.proc.returncode != 0:
            raise BystanderFailed(
                f"bystander exited {self.proc.returncode}: {err.decode()[-2000:]}"
            )
        return out.decode()


def _print_joined(joined: Joined) -> None:
    print(joined.to_json(), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="astranet-bystander", description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--region", default="eu-central")
    parser.add_argument("--game-mode", default="bystander")
    parser.add_argument("--token", default=None)
    parser.add_argument("--party-size", type=int, default=1)
    parser.add_argument("--arrivals", action="store_true", help="report each arrival time")
    args = parser.parse_args(argv)
    report = asyncio.run(
        measure(
            args.url,
            args.seconds,
            warmup_s=args.warmup,
            region=args.region,
            game_mode=args.game_mode,
            token=args.token,
            party_size=args.party_size,
            on_joined=_print_joined,
        )
    )
    fields: dict[str, Any] = asdict(report)
    if not args.arrivals:
        del fields["arrivals"]
    print(json.dumps(fields), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
