"""Smoke run of benchmarks/bit_identity.py (30 ticks): the digest a CPU pass is checked
against must be reproducible -- across processes and hash seeds -- and must tell scenarios
apart, or "same digest" would prove nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bit_identity.py"


def _digests(hash_seed: str) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--ticks=30", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["digests"]


def test_digests_are_reproducible_and_distinct() -> None:
    first, second = _digests("1"), _digests("2")
    assert first == second
    assert len(first) == 16  # 15 scenarios + TOTAL
    assert len(set(first.values())) == len(first)
