"""The JS client's codec and protocol under Node's test runner, against Python vectors.

tests/js/vectors.py writes the vectors (in a subprocess: until Schema.describe lands it
re-fingerprints the schemas it describes); ``node --test js/test/`` must reproduce them.
Needs Node >= 20 and ``npm ci`` in js/ (``make test`` runs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_js_client_reproduces_the_python_vectors(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "node (>= 20) is needed for the JS client tests"
    assert (REPO / "js/node_modules/@msgpack/msgpack").is_dir(), (
        "run `npm ci` in js/ (make test does)"
    )
    subprocess.run(
        [sys.executable, "-m", "tests.js.vectors", str(tmp_path)], cwd=REPO, check=True, timeout=60
    )
    env = {**os.environ, "ASTRANET_VECTORS": str(tmp_path / "vectors.json")}
    result = subprocess.run(
        [node, "--test", "--test-reporter=spec", "test/"],
        cwd=REPO / "js",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        pytest.fail(f"node --test failed:\n{result.stdout}\n{result.stderr}")
    assert "fail 0" in result.stdout


def test_the_jsdoc_types_check_under_strict_typescript() -> None:
    """js/src and the page are JavaScript with JSDoc types; tsc --checkJs (strict) checks them."""
    tsc = REPO / "js/node_modules/.bin/tsc"
    assert tsc.exists(), "run `npm ci` in js/ (make test does)"
    result = subprocess.run(
        [str(tsc), "-p", "."], cwd=REPO / "js", capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
