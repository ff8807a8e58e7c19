"""``astranet-server --workers N``: N cluster nodes on one machine, one process each.

Worker ``i`` (0-based) is ``python -m astranet.server`` with the same flags except
``--ws-port P+i`` and ``--http-port H+i`` (port 0 stays 0: each picks a free one), its own
``--db`` (``NAME.i.db``), ``--node-id ID-i`` when an id was given, and ``--public-url`` with
``{port}`` replaced by its WebSocket port. Each is pinned to CPU ``i mod cpus`` and logs its
own ``listening ws=PORT http=PORT`` line. The parent forwards SIGTERM/SIGINT to every worker
and exits with the worst exit code; if one worker dies, the others keep serving (the cluster
forgets the dead one within the lease). Needs ``--redis`` (config refuses otherwise).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from astranet.server.config import ServerConfig

__all__ = ["run_workers", "worker_args"]

STOP_TIMEOUT_S = 15.0
# Flags the parent rewrites per worker (their values are dropped from the shared argv).
_PER_WORKER = ("--ws-port", "--http-port", "--db", "--node-id", "--public-url", "--workers")


def _shared_args(argv: list[str]) -> list[str]:
    shared: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in _PER_WORKER:
            skip = "=" not in arg
            continue
        shared.append(arg)
    return shared


def worker_args(config: ServerConfig, argv: list[str], index: int) -> list[str]:
    """The command line of worker ``index``."""
    ws_port = config.ws_port + index if config.ws_port else 0
    http_port = config.http_port + index if config.http_port else 0
    db = Path(config.db)
    args = [
        *_shared_args(argv),
        "--workers", "1",
        "--ws-port", str(ws_port),
        "--http-port", str(http_port),
        "--db", str(db.with_name(f"{db.stem}.{index}{db.suffix or '.db'}")),
    ]  # fmt: skip
    if config.node_id is not None:
        args += ["--node-id", f"{config.node_id}-{index}"]
    if config.public_url is not None:
        args += ["--public-url", config.public_url.replace("{port}", str(ws_port))]
    return args


def run_workers(config: ServerConfig, argv: list[str]) -> int:
    """Start ``config.workers`` nodes and supervise them until a signal; the exit code."""
    cpus = sorted(os.sched_getaffinity(0))
    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(config.workers):
        cmd = [sys.executable, "-m", "astranet.server", *worker_args(config, argv, index)]
        proc = subprocess.Popen(cmd)
        os.sched_setaffinity(proc.pid, {cpus[index % len(cpus)]})
        procs.append(proc)
    while not stopping and any(proc.poll() is None for proc in procs):
        time.sleep(0.2)  # supervising child processes: no event to await across them
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return max(abs(proc.returncode or 0) for proc in procs)
