"""Smoke run of benchmarks/interest.py, scaled down (1,000 entities, 10 clients, 1 s): the
``--json`` contract, every client within its budget, and near entities updated every tick.
No timing is asserted (the benchmark measures it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "interest.py"
KEYS = {
    "entities",
    "clients",
    "budget_bytes_per_s",
    "bytes_per_client_per_s_max",
    "near_update_hz",
    "far_update_hz",
    "tick_hz",
    "tick_ms_p99",
}


def test_interest_benchmark_smoke() -> None:
    args = ["--entities=1000", "--clients=10", "--world=300", "--seconds=1.5", "--json"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) >= KEYS
    assert result["bytes_per_client_per_s_max"] <= result["budget_bytes_per_s"]
    assert result["near_update_hz"] >= 29.0
    assert 0 < result["far_update_hz"] <= result["near_update_hz"]
