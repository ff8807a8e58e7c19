"""Server side of benchmarks/server_load.py beyond :mod:`astranet.tools.serverproc`: profiling.

The server subprocess, ``/metrics`` scraping, histogram quantiles and ``/proc`` CPU come from
:mod:`astranet.tools.serverproc` (shared with ``astranet-loadtest``); this module adds what only
the benchmark needs:

* :func:`start_py_spy` samples the server with py-spy (optional tool, ``pip install py-spy``)
  into collapsed stacks; :func:`summarise_collapsed` ranks functions by inclusive share.

Errors: :class:`~astranet.tools.serverproc.ServerStartError` when py-spy is not installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from astranet.tools.serverproc import ServerStartError

__all__ = ["start_py_spy", "summarise_collapsed"]


def start_py_spy(pid: int, duration_s: float, out: Path) -> subprocess.Popen[bytes]:
    """Record ``pid`` for ``duration_s`` with py-spy: collapsed stacks of on-CPU samples of
    every thread, ``--nonblocking`` so the server is never paused."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        raise ServerStartError("--py-spy needs py-spy: .venv/bin/pip install py-spy")
    args = [
        str(py_spy),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(duration_s))),
        "--rate",
        "200",
        "--format",
        "raw",
        "--nonblocking",
        "-o",
        str(out),
    ]
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
