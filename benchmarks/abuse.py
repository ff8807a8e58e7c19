"""Issue 16's attacks at full scale against a default server, with a bystander measuring the harm.

    .venv/bin/python benchmarks/abuse.py [--seconds 20] [--only room_amplification,...] [--json]

Each attack runs against a fresh ``astranet-server`` process (the co-op game, default flags
unless the attack says otherwise) while a bystander process (``astranet.tools.bystander``) plays
in another room. One JSON line per attack: the bystander's snapshot rate, max gap and ping RTT
p99, ``/healthz`` latency from another address during the attack, the server's RSS before and
after, and the attack's own outcome. With ``--json`` the last line is one object with all of
them. Goal (issue 16): bystander >= 28 snapshots/s, max gap < 250 ms, /healthz < 100 ms, RSS
bounded. Attackers bind 127.0.0.2 and up (one address unless the attack says "many").

Also ``auth``: a micro-benchmark of JWT verification per join (HS256, RS256, ES256) — the only
cost authentication adds (inputs are never touched by it) — and ``rooms_render``: rendering
``GET /rooms`` at 10,000 rooms in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from astranet.tools import attacks
from astranet.tools.serverproc import ServerProcess

HOST = "127.0.0.1"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _get_ms(url: str) -> float:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
    except OSError:
        return float("inf")
    return (time.perf_counter() - started) * 1000


async def healthz_probe(url: str, seconds: float) -> list[float]:
    """/healthz from 127.0.0.1 (not an attacker address) every 200 ms."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    times = []
    while loop.time() < end:
        times.append(await asyncio.to_thread(_get_ms, url + "/healthz"))
        await asyncio.sleep(0.2)  # probe pacing
    return times


async def bystander_process(url: str, seconds: float) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "astranet.tools.bystander", "--url", url, "--seconds",
        str(seconds), "--warmup", "1.0", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return json.loads(out.decode().strip().splitlines()[-1])


async def run_attack(
    name: str,
    server: ServerProcess,
    attack: Callable[[], Awaitable[Any]],
    seconds: float,
) -> dict[str, Any]:
    rss_before = rss_mb(server.pid)
    watching = asyncio.create_task(bystander_process(server.ws_url, seconds))
    probing = asyncio.create_task(healthz_probe(server.http_url, seconds + 1.0))
    await asyncio.sleep(1.0)  # the bystander joins and warms up first
    outcome = await attack()
    report, healthz = await asyncio.gather(watching, probing)
    rss_after = rss_mb(server.pid)
    log = server.log_path.read_text(errors="replace")
    return {
        "attack": name,
        "bystander_rate_per_s": round(report["rate_per_s"], 2),
        "bystander_max_gap_ms": round(report["max_gap_ms"], 1),
        "bystander_rtt_p99_ms": round(report["rtt_p99_ms"], 2),
        "healthz_max_ms": round(max(healthz), 1),
        "healthz_p50_ms": round(statistics.median(healthz), 1),
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_after, 1),
        "server_tracebacks": log.count("Traceback"),
        "server_log_bytes": len(log),
        "outcome": outcome,
    }


async def room_amplification(seconds: float) -> dict[str, Any]:
    with ServerProcess() as server:

        async def attack() -> dict[str, int]:
            return await attacks.room_amplification(server.ws_url, seconds=seconds, per_s=5)

        result = await run_attack("room_amplification", server, attack, seconds)
        result["rooms_listed"] = len(await asyncio.to_thread(_json, server.http_url + "/rooms"))
        return result


async def lobby_squatting(seconds: float) -> dict[str, Any]:
    with ServerProcess() as server:

        async def attack() -> dict[str, Any]:
            held = await attacks.lobby_squat(server.ws_url, count=1020)
            await asyncio.sleep(seconds / 2)  # squat while the bystander plays
            codes = await attacks.close_codes(held, within_s=0.5)
            for ws in held:
                ws.transport.abort()
            return {"opened": len(held), "closed_1013": codes.get(1013, 0)}

        return await run_attack("lobby_squatting", server, attack, seconds)


async def fd_exhaustion(seconds: float) -> dict[str, Any]:
    """The common 1,024-descriptor limit (hard, so the server cannot raise it), filled from 8
    addresses (8 x 256 > 1,024, so the per-address bound alone cannot prevent it)."""
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "server.log"

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

        command = [sys.executable, "-m", "astranet.server", "--ws-port", "0", "--http-port", "0",
                   "--db", str(Path(tmp) / "a.db")]  # fmt: skip
        proc = await asyncio.to_thread(_spawn, command, log_path, limit)
        server = _Adopted(proc, log_path)
        try:
            await asyncio.to_thread(server.wait_listening)

            async def attack() -> dict[str, Any]:
                held = []
                for source in range(2, 10):
                    held += await asyncio.to_thread(
                        attacks.fd_exhaustion, HOST, server.ws_port, count=250,
                        source=f"127.0.0.{source}",
                    )  # fmt: skip
                await asyncio.sleep(seconds / 2)
                for sock in held:
                    sock.close()
                return {"tcp_connections": len(held)}

            result = await run_attack("fd_exhaustion", server, attack, seconds)  # type: ignore[arg-type]
            text = log_path.read_text(errors="replace")
            result["exhaustion_log_lines"] = text.count("out of file descriptors")
            return result
        finally:
            proc.terminate()
            proc.wait(15)


def _spawn(command: list[str], log_path: Path, limit: Callable[[], None]) -> subprocess.Popen:
    with log_path.open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit)


class _Adopted:
    """The few ServerProcess fields run_attack reads, for a server started with a low limit."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc, self.log_path = proc, log_path
        self.ws_port = self.http_port = 0

    def wait_listening(self) -> None:
        import re

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = re.search(r"listening ws=(\d+) http=(\d+)", self.log_path.read_text())
            if found:
                self.ws_port, self.http_port = int(found[1]), int(found[2])
                return
            time.sleep(0.05)
        raise RuntimeError(self.log_path.read_text()[-2000:])

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.ws_port}"

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"


async def metrics_flood(seconds: float, *, sources: int) -> dict[str, Any]:
    with ServerProcess() as server:

        async def attack() -> dict[str, int]:
            floods = [
                attacks.http_flood(
                    HOST,
                    server.http_port,
                    seconds=seconds,
                    connections=4,
                    paths=["/metrics", "/rooms"],
                    source=f"127.0.0.{2 + i}",
                )
                for i in range(sources)
            ]
            merged: dict[str, int] = {}
            for statuses in await asyncio.gather(*floods):
                for key, count in statuses.items():
                    merged[key] = merged.get(key, 0) + count
            merged["requests_per_s"] = int(
                sum(v for k, v in merged.items() if k.isdigit()) / seconds
            )
            return merged

        name = "metrics_flood_one_address" if sources == 1 else f"metrics_flood_{sources}_addresses"
        return await run_attack(name, server, attack, seconds)


async def fuzz(seconds: float) -> dict[str, Any]:
    with ServerProcess() as server:

        async def attack() -> dict[str, int]:
            return await attacks.fuzz(server.ws_url, messages=20_000, workers=16)

        return await run_attack("fuzz_20k", server, attack, seconds)


def auth_micro() -> dict[str, Any]:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from astranet.server.auth import JwtAuthenticator

    claims = {"sub": "player-123456", "exp": int(time.time()) + 3600}
    results: dict[str, Any] = {"attack": "auth_verify_per_join"}
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())

    def pem(key: Any) -> str:
        return (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    secret = "s" * 48
    cases = {
        "hs256": (JwtAuthenticator.hs256(secret), jwt.encode(claims, secret, "HS256")),
        "rs256": (
            JwtAuthenticator.for_public_key(pem(rsa_key)),
            jwt.encode(claims, rsa_key, "RS256"),
        ),
        "es256": (
            JwtAuthenticator.for_public_key(pem(ec_key)),
            jwt.encode(claims, ec_key, "ES256"),
        ),
    }
    for name, (auth, token) in cases.items():
        runs = [
            timeit.timeit(lambda a=auth, t=token: a.verify(t), number=500) / 500 for _ in range(5)
        ]
        results[f"{name}_us"] = round(statistics.median(runs) * 1e6, 1)
    return results


def rooms_render() -> dict[str, Any]:
    from astranet.server.http import (
        MAX_RENDER_INTERVAL_S,
        RENDER_LOOP_SHARE,
        ROOMS_MIN_INTERVAL_S,
    )
    from astranet.server.matchmaking import Matchmaker

    mm = Matchmaker(["us-east"], max_rooms=10_000)
    for index in range(10_000):
        mm.find_or_create("us-east", f"m{index}", 1)

    def render() -> bytes:
        return json.dumps([info.as_json(1) for info in mm.rooms()], separators=(",", ":")).encode()

    runs = [timeit.timeit(render, number=5) / 5 for _ in range(5)]
    render_s = statistics.median(runs)
    # CoalescedRender: renders at most every max(0.1 s, render / RENDER_LOOP_SHARE), <= 1 s.
    interval_s = max(ROOMS_MIN_INTERVAL_S, min(MAX_RENDER_INTERVAL_S, render_s / RENDER_LOOP_SHARE))
    return {
        "attack": "rooms_render_10k_rooms",
        "render_ms": round(render_s * 1000, 2),
        "renders_per_s_max": round(1 / interval_s, 2),
        "loop_ms_per_s_max": round(render_s * 1000 / interval_s, 1),
    }


async def baseline(seconds: float) -> dict[str, Any]:
    """The same measurement with no attack: the reference for every line above."""
    with ServerProcess() as server:

        async def attack() -> dict[str, Any]:
            await asyncio.sleep(seconds / 2)
            return {}

        return await run_attack("baseline_no_attack", server, attack, seconds)


ATTACKS: dict[str, Callable[[float], Awaitable[dict[str, Any]]]] = {
    "baseline": baseline,
    "room_amplification": room_amplification,
    "lobby_squatting": lobby_squatting,
    "fd_exhaustion": fd_exhaustion,
    "metrics_flood_one_address": lambda s: metrics_flood(s, sources=1),
    "metrics_flood_16_addresses": lambda s: metrics_flood(s, sources=16),
    "fuzz_20k": fuzz,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--only", default="", help="comma-separated attack names")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    chosen = [n for n in args.only.split(",") if n] or [*ATTACKS, "auth", "rooms_render"]
    results = []
    for name in chosen:
        if name == "auth":
            result = auth_micro()
        elif name == "rooms_render":
            result = rooms_render()
        else:
            result = asyncio.run(ATTACKS[name](args.seconds))
        results.append(result)
        print(json.dumps(result), flush=True)
    if args.json:
        print(json.dumps({"results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
