"""Atomicity under SIGKILL: a writer killed at a random moment leaves a loadable checkpoint."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from astranet.storage.sqlite import SQLiteStorage
from tests.storage.crash_child import ROOM_ID, ROWS

CHILD = Path(__file__).with_name("crash_child.py")
# Each round: child start-up (~0.3 s) plus a kill moment drawn from this range.
KILL_AFTER_S = (0.0, 0.4)
ROUNDS = 4


def _run_and_kill(path: Path, kill_after_s: float) -> int:
    """Start the child, wait for its first commit, SIGKILL it; return the tick it started at."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline()  # blocks until the first checkpoint is committed
        assert line.startswith("ready"), f"child failed to start: {line!r}"
        # Not synchronisation: the randomly chosen moment to pull the plug.
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=kill_after_s)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        child.stdout.close()
    return int(line.split()[1])


@pytest.mark.timeout(60)
def test_sigkilled_writer_leaves_a_whole_latest_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    rng = random.Random()
    last_tick = 0
    for _ in range(ROUNDS):  # several crashes on the same file: recovery composes
        started_at = _run_and_kill(path, rng.uniform(*KILL_AFTER_S))
        assert started_at == last_tick + 1  # the child resumed from the surviving checkpoint
        storage = SQLiteStorage(path)  # quick_check runs here: the file is not corrupt
        try:
            checkpoint = storage.load_checkpoint(ROOM_ID)
        finally:
            storage.close()
        assert checkpoint is not None and checkpoint.tick >= started_at
        rows = checkpoint.state["rows"]
        # Every column agrees with the tick: no mix of two checkpoints survived.
        assert rows.shape == (ROWS,)
        assert np.all(rows["x"] == checkpoint.tick) and np.all(rows["y"] == -checkpoint.tick)
        assert checkpoint.state["tick_echo"].tolist() == [checkpoint.tick]
        last_tick = checkpoint.tick
