"""The astranet-client demo: event lines, clean exit codes, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from astranet.client.demo import EXIT_CONNECT, EXIT_JOIN, EXIT_OK, _parser, run
from tests.client.conftest import Net


async def _demo(argv: list[str]) -> tuple[int, list[str]]:
    lines: list[str] = []
    # The test server plays dots (tests/client/conftest.py); the demo defaults to co-op.
    status = await run(
        _parser().parse_args(["--game", "astranet.examples.dots:game", *argv]), lines.append
    )
    return status, lines


@pytest.mark.timeout(30)
async def test_demo_plays_and_prints_one_line_per_event(net: Net):
    await net.start(latency_ms=10.0)
    status, lines = await _demo(["--url", net.url, "--duration", "1.5", "--every", "10"])
    assert status == EXIT_OK
    assert lines[0] == f"connected {net.url}"
    assert lines[1].startswith("joined room ") and " player " in lines[1]
    assert " entity " in lines[1]
    snapshot_lines = [line for line in lines if line.startswith("snapshot ")]
    assert len(snapshot_lines) >= 3
    assert " rtt " in snapshot_lines[-1] and snapshot_lines[-1].endswith(" B")
    assert lines[-2].startswith("done: ") and "exact predictions, max error 0," in lines[-2]
    assert lines[-1].startswith("closed 1000")  # Leave answered by the server's close


@pytest.mark.timeout(30)
async def test_demo_refused_join_exits_3_with_the_reason(net: Net):
    await net.start()
    status, lines = await _demo(["--url", net.url, "--room", "NOSUCH12", "--duration", "1"])
    assert status == EXIT_JOIN
    assert lines[-1] == "astranet-client: join refused: room_not_found: room ID does not exist"
    status, lines = await _demo(["--url", net.url, "--region", "mars", "--duration", "1"])
    assert status == EXIT_JOIN
    assert "unknown_region" in lines[-1]


@pytest.mark.timeout(30)
def test_demo_wrong_url_exits_non_zero_without_a_traceback():
    env_url = "ws://127.0.0.1:9"  # discard port: nothing listens, connection refused
    result = subprocess.run(
        [sys.executable, "-m", "astranet.client.demo", "--duration", "1"],
        env={"AW_WS_URL": env_url, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=25,
        check=False,
    )
    assert result.returncode == EXIT_CONNECT
    assert f"astranet-client: cannot connect to {env_url}" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
