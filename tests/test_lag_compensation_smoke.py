"""Smoke run of benchmarks/lag_compensation.py: a real server, one bot client at 150 ms RTT
through the link conditioner, ~4 s. Shots aimed at what the client draws must hit when the
server rewinds to the client's view, and visibly less often when it judges them at its present.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "lag_compensation.py"


def test_lag_compensation_benchmark_smoke() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--seconds=4", "--repeat=1", "--clients=1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"rtt_ms", "hit_rate", "hit_rate_uncompensated", "rewind_us"} <= set(result)
    assert result["shots"] >= 5
    assert result["rtt_ms"] >= 140
    # Compensated shots are judged on exactly the drawn state (the aim is quantized to 1/256
    # turn, well inside the hit radius); generous margins for a noisy machine.
    assert result["hit_rate"] >= 0.9
    assert result["hit_rate_uncompensated"] <= result["hit_rate"] - 0.2
