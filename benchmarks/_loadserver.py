"""Server side of benchmarks/server_load.py: run ``astranet-server`` as a subprocess, read it.

* :class:`ServerProcess` starts ``python -m astranet.server`` with ``--ws-port 0 --http-port 0``
  and the cubes game, logs to a temporary file (never a pipe: an undrained pipe would block the
  server), waits for its ``listening ws=PORT http=PORT`` line, and stops it with SIGTERM.
* :func:`cpu_seconds` reads a process's utime + stime from ``/proc/<pid>/stat`` (all threads),
  so the load clients -- separate processes -- are never counted as server CPU.
* :func:`start_py_spy` samples the server with py-spy (optional tool, ``pip install py-spy``)
  into collapsed stacks; :func:`summarise_collapsed` ranks functions by inclusive share.
* :func:`scrape` fetches ``/metrics`` and :class:`MetricsSample` keeps what the benchmark needs:
  the tick-duration histogram buckets and the late / skipped tick counters. Differences of two
  samples give the measurement window's figures; :func:`histogram_quantile` interpolates a
  quantile inside the buckets (coarse: resolution is the bucket width, see
  ``astranet.server.metrics.TICK_DURATION_BUCKETS_S``).

Limits: Linux only (``/proc``). ``STARTUP_TIMEOUT_S`` for the listening line,
``STOP_TIMEOUT_S`` for a graceful exit before SIGKILL.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from astranet.errors import AstranetError

__all__ = [
    "MetricsSample",
    "MetricsUnavailable",
    "ServerProcess",
    "ServerStartError",
    "cpu_seconds",
    "histogram_quantile",
    "scrape",
    "start_py_spy",
    "summarise_collapsed",
]

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0  # WIRE rule 8 wants exit within 10 s; a little slack for a busy box
# An overloaded server answers /metrics late (the HTTP side port shares the event loop).
SCRAPE_TIMEOUT_S = 30.0
_LISTENING = re.compile(r"listening ws=(\d+) http=(\d+)")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerStartError(AstranetError):
    """The server subprocess exited or never logged its ports."""


class MetricsUnavailable(AstranetError):
    """``/metrics`` did not answer within SCRAPE_TIMEOUT_S (or answered garbage)."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (every thread)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _CLOCK_TICKS


class ServerProcess:
    """``python -m astranet.server`` on free ports; use as a context manager."""

    def __init__(self, game: str, env: Mapping[str, str], extra_args: Sequence[str] = (),
                 cpu: int | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="astranet-load-")
        self.log_path = Path(self._dir.name) / "server.log"
        args = [sys.executable, "-m", "astranet.server", "--game", game,
                "--ws-port", "0", "--http-port", "0", "--regions", "us-east",
                "--db", str(Path(self._dir.name) / "load.db"), "--log-level", "info",
                *extra_args]
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **env})
        if cpu is not None:
            os.sched_setaffinity(self.proc.pid, {cpu})
        self.ws_port, self.http_port = self._wait_listening()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    def _wait_listening(self) -> tuple[int, int]:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            found = _LISTENING.search(self.log_path.read_text(errors="replace"))
            if found:
                return int(found[1]), int(found[2])
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)  # polling a log file: there is no event to await across processes
        self.stop()
        raise ServerStartError(f"server did not start; log tail:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> int:
        """SIGTERM, wait for a graceful exit (SIGKILL after STOP_TIMEOUT_S); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class MetricsSample:
    """The counters the benchmark reads, at one instant."""

    tick_buckets: tuple[tuple[float, float], ...]  # (upper bound s, cumulative count), sorted
    tick_count: float
    tick_sum_s: float
    late_ticks: float
    skipped_ticks: float
    snapshot_payload_bytes: float

    def minus(self, earlier: MetricsSample) -> MetricsSample:
        """The window between ``earlier`` and this sample."""
        buckets = tuple((le, count - before) for (le, count), (_, before)
                        in zip(self.tick_buckets, earlier.tick_buckets, strict=True))
        return MetricsSample(buckets, self.tick_count - earlier.tick_count,
                             self.tick_sum_s - earlier.tick_sum_s,
                             self.late_ticks - earlier.late_ticks,
                             self.skipped_ticks - earlier.skipped_ticks,
                             self.snapshot_payload_bytes - earlier.snapshot_payload_bytes)


def scrape(http_port: int) -> MetricsSample:
    """Fetch and parse ``/metrics`` of the server on ``http_port``."""
    url = f"http://127.0.0.1:{http_port}/metrics"
    values: dict[str, float] = {}
    buckets: list[tuple[float, float]] = []
    try:
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "astranet_tick_duration_seconds_bucket":
                    buckets.append((float(sample.labels["le"]), sample.value))
                else:
                    values[sample.name] = sample.value
    except (OSError, ValueError) as exc:  # URLError and TimeoutError are OSErrors
        raise MetricsUnavailable(f"GET {url} failed: {exc}") from exc
    buckets.sort()
    return MetricsSample(
        tuple(buckets),
        values.get("astranet_tick_duration_seconds_count", 0.0),
        values.get("astranet_tick_duration_seconds_sum", 0.0),
        values.get("astranet_late_ticks_total", 0.0),
        values.get("astranet_skipped_ticks_total", 0.0),
        values.get("astranet_snapshot_bytes_total", 0.0),
    )


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Prometheus-style quantile: linear inside the bucket holding rank ``q * total``.

    ``buckets`` are (upper bound, cumulative count) sorted by bound, ending with ``+Inf``.
    A quantile in the ``+Inf`` bucket returns the largest finite bound (a lower bound).
    NaN when there are no observations.
    """
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(upper):
                return lower
            share = (rank - below) / (cumulative - below) if cumulative > below else 1.0
            return lower + (upper - lower) * share
        lower, below = upper, cumulative
    return lower


def start_py_spy(pid: int, duration_s: float, out: Path) -> subprocess.Popen[bytes]:
    """Record ``pid`` for ``duration_s`` with py-spy: collapsed stacks of on-CPU samples of
    every thread, ``--nonblocking`` so the server is never paused."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        raise ServerStartError("--py-spy needs py-spy: .venv/bin/pip install py-spy")
    args = [str(py_spy), "record", "--pid", str(pid), "--duration", str(max(1, round(duration_s))),
            "--rate", "200", "--format", "raw", "--nonblocking", "-o", str(out)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarise_collapsed(path: Path, top: int = 25) -> list[tuple[str, float, float]]:
    """(function, inclusive share, self share) of samples, largest inclusive first.

    A collapsed line is ``frame;frame;...;leaf COUNT`` with frames ``func (path:line)``; a
    function is named ``func (file)`` and counts once per stack however deep it recurses.
    Samples are on-CPU samples (py-spy without ``--idle``), so shares are of server CPU time.
    """
    inclusive: dict[str, float] = {}
    own: dict[str, float] = {}
    total = 0.0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = float(count_text)
        total += count
        frames = [_frame_name(frame) for frame in stack.split(";")]
        for name in set(frames):
            inclusive[name] = inclusive.get(name, 0.0) + count
        own[frames[-1]] = own.get(frames[-1], 0.0) + count
    if not total:
        return []
    ranked = sorted(inclusive.items(), key=lambda item: -item[1])[:top]
    return [(name, count / total, own.get(name, 0.0) / total) for name, count in ranked]


def _frame_name(frame: str) -> str:
    """``func (dir/file.py:12)`` -> ``func (file.py)``: one name per function, not per line."""
    func, _, where = frame.partition(" (")
    if not where:
        return func
    return f"{func} ({where.rsplit(':', 1)[0].rsplit('/', 1)[-1]})"
