"""The server side of the load test: a server subprocess, its ``/metrics``, its CPU.

* :class:`ServerProcess` runs ``python -m astranet.server --game GAME --ws-port 0
  --http-port 0 --db <tmp or given>``, logs to a file (never a pipe: an undrained pipe would
  block the server), reads the ports from its ``listening ws=PORT http=PORT`` line, waits for
  other log lines (``wait_for_log``), and stops it with SIGTERM (WIRE rule 8: it checkpoints and
  exits 0) or kills it (crash tests). The test suite's one server subprocess launcher.
* :func:`cpu_seconds` reads utime + stime of a process (all threads) from ``/proc/<pid>/stat``,
  so the bot workers -- other processes -- never count as server CPU.
* :func:`parse_metrics` turns the Prometheus text into a :class:`MetricsSample` (the counters
  the load test reads); :func:`scrape` fetches it; :meth:`MetricsSample.minus` gives a window;
  :func:`histogram_quantile` interpolates a quantile inside the tick-duration buckets (the
  resolution is the bucket width: ``astranet.server.metrics.TICK_DURATION_BUCKETS_S``).

Errors: :class:`ServerStartError` and :class:`MetricsUnavailable` (both ``AstranetError``).
Limits: Linux (``/proc``); ``STARTUP_TIMEOUT_S``, ``STOP_TIMEOUT_S``, ``SCRAPE_TIMEOUT_S``.
Benchmark: none (the load test's own plumbing).
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
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from astranet.errors import AstranetError
from astranet.tools.children import ChildProcess, stop_child

__all__ = [
    "MetricsSample",
    "MetricsUnavailable",
    "ServerProcess",
    "ServerStartError",
    "cpu_seconds",
    "histogram_quantile",
    "parse_metrics",
    "scrape",
]

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0  # WIRE rule 8 wants an exit within 10 s; slack for a loaded machine
# The HTTP side port shares the server's event loop: an overloaded server answers late.
SCRAPE_TIMEOUT_S = 10.0
MAX_METRICS_BYTES = 1 << 20  # /metrics of one server is a few KiB; refuse anything absurd
_LISTENING = re.compile(r"listening ws=(\d+) http=(\d+)")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerStartError(AstranetError):
    """The server subprocess exited or never logged its ports."""


class MetricsUnavailable(AstranetError):
    """``/metrics`` did not answer in time, or answered something unparseable."""


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds used so far by process ``pid`` (every thread), or by its
    thread ``thread`` (a Linux tid; the main thread's tid is ``pid``)."""
    where = f"/proc/{pid}" if thread is None else f"/proc/{pid}/task/{thread}"
    stat = Path(f"{where}/stat").read_text()
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # proc(5) fields 14, 15


class ServerProcess(ChildProcess):
    """``python -m astranet.server`` on free ports of 127.0.0.1 (a context manager).

    ``game`` is a ``--game`` spec; ``db`` the database file (default: a fresh one in a
    temporary folder); ``cwd`` the server's working directory (``--game`` imports from it);
    ``env`` is added to this process's environment for the server (a game's settings);
    ``cpu`` pins the server to that one CPU (``sched_setaffinity``) right after it starts.
    """

    def __init__(
        self,
        game: str = "astranet.examples.coop:game",
        extra_args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cpu: int | None = None,
        db: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="astranet-server-")
        self.log_path = Path(self._dir.name) / "server.log"
        self.db = db if db is not None else Path(self._dir.name) / "server.db"
        args = [
            sys.executable,
            "-m",
            "astranet.server",
            "--game",
            game,
            "--host",
            "127.0.0.1",
            "--ws-port",
            "0",
            "--http-port",
            "0",
            "--db",
            str(self.db),
            "--log-level",
            "info",
            *extra_args,
        ]
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=None if env is None else {**os.environ, **env},
            cwd=cwd,
        )
        if cpu is not None:
            os.sched_setaffinity(self.proc.pid, {cpu})
        self.ws_port, self.http_port = self._wait_listening()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    url = ws_url

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _wait_listening(self) -> tuple[int, int]:
        try:
            found = self.wait_for_log(_LISTENING, STARTUP_TIMEOUT_S)
        except ServerStartError:
            self.stop()
            raise
        return int(found[1]), int(found[2])

    @property
    def lines(self) -> list[str]:
        """The server's log so far, one line each."""
        return self.log_path.read_text(errors="replace").splitlines()

    def wait_for_log(
        self, pattern: re.Pattern[str], timeout_s: float = STARTUP_TIMEOUT_S
    ) -> re.Match[str]:
        """The first log line matching ``pattern``; ServerStartError if the process exits or
        ``timeout_s`` passes first."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = pattern.search(self.log_path.read_text(errors="replace"))
            if found:
                return found
            if self.proc.poll() is not None or time.monotonic() >= deadline:
                raise ServerStartError(
                    f"no log line matching {pattern.pattern!r}; log tail:\n{self.log_tail()}"
                )
            time.sleep(0.05)  # polling a log file: no event crosses the process boundary

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.lines[-lines:])

    def kill(self) -> None:
        """SIGKILL (a crash: nothing is flushed)."""
        self.proc.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM (WIRE rule 8: checkpoint, close clients 1001, exit 0)."""
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """The exit code, waiting at most ``timeout_s`` (subprocess.TimeoutExpired after)."""
        return self.proc.wait(timeout_s)

    def stop(self) -> int:
        """SIGTERM, wait for the graceful exit (SIGKILL after STOP_TIMEOUT_S); exit code."""
        returncode = stop_child(self.proc, STOP_TIMEOUT_S)
        self._log.close()
        return returncode


@dataclass(frozen=True, slots=True)
class MetricsSample:
    """The server counters the load test reads, at one instant (or over a window)."""

    tick_buckets: tuple[tuple[float, float], ...] = ()  # (upper bound s, cumulative), sorted
    ticks: float = 0.0
    tick_sum_s: float = 0.0
    late_ticks: float = 0.0
    skipped_ticks: float = 0.0
    bytes_sent: float = 0.0
    snapshot_bytes: float = 0.0
    snapshot_encodes: float = 0.0
    snapshot_deliveries: float = 0.0
    input_violations: float = 0.0
    inputs_dropped: float = 0.0
    kicks: dict[str, float] = field(default_factory=dict)  # by reason
    players: float = 0.0  # gauges: the value now, not a difference
    connections: float = 0.0

    @property
    def kicks_total(self) -> float:
        return sum(self.kicks.values())

    def minus(self, earlier: MetricsSample) -> MetricsSample:
        """Counters over the window from ``earlier`` to this sample (gauges stay current)."""
        before = dict(earlier.tick_buckets)
        buckets = tuple((le, count - before.get(le, 0.0)) for le, count in self.tick_buckets)
        kicks = {
            reason: count - earlier.kicks.get(reason, 0.0) for reason, count in self.kicks.items()
        }
        return MetricsSample(
            buckets,
            self.ticks - earlier.ticks,
            self.tick_sum_s - earlier.tick_sum_s,
            self.late_ticks - earlier.late_ticks,
            self.skipped_ticks - earlier.skipped_ticks,
            self.bytes_sent - earlier.bytes_sent,
            self.snapshot_bytes - earlier.snapshot_bytes,
            self.snapshot_encodes - earlier.snapshot_encodes,
            self.snapshot_deliveries - earlier.snapshot_deliveries,
            self.input_violations - earlier.input_violations,
            self.inputs_dropped - earlier.inputs_dropped,
            {reason: count for reason, count in kicks.items() if count},
            self.players,
            self.connections,
        )


_COUNTERS = {
    "astranet_tick_duration_seconds_count": "ticks",
    "astranet_tick_duration_seconds_sum": "tick_sum_s",
    "astranet_late_ticks_total": "late_ticks",
    "astranet_skipped_ticks_total": "skipped_ticks",
    "astranet_bytes_sent_total": "bytes_sent",
    "astranet_snapshot_bytes_total": "snapshot_bytes",
    "astranet_snapshot_encodes_total": "snapshot_encodes",
    "astranet_snapshot_deliveries_total": "snapshot_deliveries",
    "astranet_input_violations_total": "input_violations",
    "astranet_inputs_dropped_total": "inputs_dropped",
    "astranet_players": "players",
    "astranet_connections": "connections",
}


def parse_metrics(text: str) -> MetricsSample:
    """The :class:`MetricsSample` in a Prometheus text exposition; missing metrics are 0."""
    values: dict[str, float] = {}
    buckets: list[tuple[float, float]] = []
    kicks: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "astranet_tick_duration_seconds_bucket":
                    buckets.append((float(sample.labels["le"]), sample.value))
                elif sample.name == "astranet_kicks_total":
                    kicks[sample.labels.get("reason", "")] = sample.value
                elif sample.name in _COUNTERS:
                    values[_COUNTERS[sample.name]] = sample.value
    except (ValueError, KeyError, TypeError) as exc:  # the parser's ways of saying "garbage"
        raise MetricsUnavailable(f"unparseable /metrics: {exc}") from exc
    buckets.sort()
    return MetricsSample(tick_buckets=tuple(buckets), kicks=kicks, **values)


def scrape(http_url: str, timeout_s: float = SCRAPE_TIMEOUT_S) -> MetricsSample:
    """GET ``{http_url}/metrics`` and parse it."""
    url = f"{http_url.rstrip('/')}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = response.read(MAX_METRICS_BYTES + 1)
    except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
        raise MetricsUnavailable(f"GET {url} failed: {exc}") from exc
    if len(body) > MAX_METRICS_BYTES:
        raise MetricsUnavailable(f"GET {url}: over {MAX_METRICS_BYTES} bytes")
    return parse_metrics(body.decode(errors="replace"))


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Prometheus-style quantile: linear inside the bucket holding rank ``q * total``.

    ``buckets`` are (upper bound, cumulative count) sorted by bound, ending with ``+Inf``. A
    quantile in the ``+Inf`` bucket returns the largest finite bound (a lower bound on the
    truth). NaN when there are no observations.
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
