"""astranet.server.heap: the heap thresholds are set once, and can be left alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from astranet.server.heap import retain_freed_memory

_PROBE = "from astranet.server.heap import retain_freed_memory as r; print(r(), r())"


def test_idempotent() -> None:
    first = retain_freed_memory()
    assert retain_freed_memory() is first


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_sets_it_and_system_opts_out() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ASTRANET_MALLOC"}
    run = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True)
    assert run.stdout.split() in (["True", "True"], ["False", "False"])  # musl: no mallopt
    env["ASTRANET_MALLOC"] = "system"
    run = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True)
    assert run.stdout.split() == ["False", "False"]
