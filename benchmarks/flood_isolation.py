"""How much three flooding neighbours delay a victim's snapshots, with the attackers in their
own process (as remote attackers are) and quiet phases as the control.

The suite's ``test_flooding_neighbours_do_not_delay_the_victims_snapshots`` runs its attackers
in the server's event loop, which throttles them (they share the loop with the server). Here
they run in a child process and flood as fast as the operating system lets them: undecodable
bytes, an unknown type, and 70 kB oversize messages (closed 1009, then back). Quiet and flooded
phases alternate (SIGSTOP / SIGCONT on the child), so machine load lands on both alike.

    .venv/bin/python benchmarks/flood_isolation.py [--rounds 5] [--phase 30] [--json]

Prints the victim's snapshot inter-arrival p50/p99/max and mean rate, quiet vs flooded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

import msgpack
import numpy as np
from websockets.exceptions import ConnectionClosed

from astranet.testing import TestClient, TestServer

GARBAGE = [b"\xc1", msgpack.packb({"t": "Nope"}), b"\x00" * 70_000]


async def _join(url: str, room_id: str, token: bytes) -> TestClient:
    client = await TestClient.open(url)
    await client.hello()
    request = {"t": "JoinRoom", "room_id": room_id, "party_token": token}
    await client.send_raw(msgpack.packb(request))
    return client


async def _flood(url: str, room_id: str, token: bytes, kind: int, joined: asyncio.Event) -> None:
    client = await _join(url, room_id, token)
    joined.set()
    while True:
        try:
            await client.send_raw(GARBAGE[kind])
            await asyncio.sleep(0)
            if kind == 2:  # oversize: closed at once; come back and do it again
                await client.closed()
                client = await _join(url, room_id, token)
        except (ConnectionClosed, TimeoutError, OSError):
            client = await _join(url, room_id, token)


async def flooder(url: str, room_id: str, token_hex: str) -> None:
    token = bytes.fromhex(token_hex)
    joined = [asyncio.Event() for _ in GARBAGE]
    tasks = [asyncio.create_task(_flood(url, room_id, token, k, joined[k])) for k in range(3)]
    await asyncio.gather(*(event.wait() for event in joined))
    print("ready", flush=True)
    await asyncio.gather(*tasks)


def _stats(gaps: list[float]) -> dict[str, float]:
    values = np.array(gaps) * 1000.0
    return {
        "gap_ms_p50": round(float(np.percentile(values, 50)), 1),
        "gap_ms_p99": round(float(np.percentile(values, 99)), 1),
        "gap_ms_max": round(float(values.max()), 1),
        "snapshots_per_s": round(1000.0 / float(values.mean()), 1),
    }


async def measure(rounds: int, phase: int) -> dict[str, dict[str, float]]:
    # Every client here comes from 127.0.0.1: lift the per-address bounds (WIRE A4), so what is
    # measured is the flood's cost, not the 1013 refusals of a bounded address.
    unbounded = ("--max-connections-per-peer", "0", "--max-rooms-per-peer", "0")
    async with TestServer("astranet.examples.dots:game", *unbounded, decode=False) as server:
        victim = await server.joined_client(party_size=4)
        assert victim.joined is not None and victim.match is not None
        assert victim.match.party_token is not None
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--flood",
            server.url,
            victim.joined.room_id,
            victim.match.party_token.hex(),
            stdout=asyncio.subprocess.PIPE,
        )
        gaps: dict[bool, list[float]] = {False: [], True: []}
        try:
            assert child.stdout is not None
            async with asyncio.timeout(30):
                await child.stdout.readline()
            for _ in range(rounds):
                for flood in (False, True):
                    child.send_signal(signal.SIGCONT if flood else signal.SIGSTOP)
                    await victim.next_snapshot()  # the gap across the switch counts for neither
                    gaps[flood].extend(await victim.snapshot_gaps(phase))
        finally:
            with contextlib.suppress(ProcessLookupError):  # it may have died: the log says why
                child.kill()  # ours, by handle
            await child.wait()
    return {"quiet": _stats(gaps[False]), "flooded": _stats(gaps[True])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--phase", type=int, default=30, help="snapshots per phase")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--flood", nargs=3, metavar=("URL", "ROOM", "TOKEN"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.flood:
        asyncio.run(flooder(*args.flood))
        return 0
    result = asyncio.run(measure(args.rounds, args.phase))
    for name, stats in result.items():
        print(f"{name:8s} " + "  ".join(f"{k} {v}" for k, v in stats.items()))
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
