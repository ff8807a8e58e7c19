"""Smoke tests of the two commands against a real server subprocess on 127.0.0.1.

``astranet-bots --rooms 1 --duration 3 --json`` plays one full room; ``astranet-loadtest
--rooms 1 --duration 4 --json --out DIR`` starts its own server and writes the summary keys
and the four PNGs. Error paths: nothing listening -> exit 2, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from astranet.tools import bots, loadtest
from astranet.tools.plots import PLOT_NAMES
from astranet.tools.serverproc import ServerProcess, scrape

LOADTEST_KEYS = {
    "clients",
    "late_tick_fraction",
    "tick_ms_p99",
    "snapshot_bytes_per_client_per_s",
    "input_to_snapshot_ms_p99",
    "disconnects",
    "kicks",
}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess() as process:
        yield process


@pytest.mark.timeout(60)
def test_bots_fill_one_room_and_report_json(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    status = bots.main(["--url", server.ws_url, "--rooms", "1", "--duration", "3", "--json"])
    report = json.loads(capsys.readouterr().out)
    summary = report["summary"]
    assert status == 0
    assert summary["clients"] == 4 and summary["rooms_full"] == 1
    assert summary["kicked"] == 0 and summary["disconnects"] == 0
    assert summary["predictions_compared"] > 4 * 40  # ~90 snapshots each in 3 s
    assert summary["rtt_ms_p50"] is not None and summary["input_to_snapshot_ms_p99"] > 0
    rows = report["bots"]
    assert [row["bot"] for row in rows] == [0, 1, 2, 3]
    assert len({row["room_id"] for row in rows}) == 1
    assert all(row["snapshots"] > 40 and row["inputs_sent"] > 40 for row in rows)


@pytest.mark.timeout(60)
def test_bots_exit_2_when_nothing_listens(capsys: pytest.CaptureFixture[str]) -> None:
    status = bots.main(["--url", "ws://127.0.0.1:9", "--rooms", "1", "--duration", "1", "--json"])
    report = json.loads(capsys.readouterr().out)
    summary = report["summary"]
    assert status == 2 and summary["clients"] == 0 and summary["join_failures"] == 4
    assert report["bots"][0]["error"].startswith("ConnectFailed")
    assert all("leader could not join" in row["error"] for row in report["bots"][1:])
    # Tallied by reason, with the address folded away (one cause, one line).
    assert list(summary["join_errors"].values()) == [3, 1]
    assert next(iter(summary["join_errors"])).startswith("leader could not join")
    assert all("127.0.0.1" not in reason for reason in summary["join_errors"])


@pytest.mark.timeout(90)
def test_loadtest_writes_summary_json_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    status = loadtest.main(["--rooms", "1", "--duration", "4", "--json", "--out", str(out)])
    summary = json.loads(capsys.readouterr().out)
    assert status == 0
    assert set(summary) >= LOADTEST_KEYS
    assert summary["clients"] == 4 and summary["kicks"] == 0 and summary["disconnects"] == 0
    assert 0.0 <= summary["late_tick_fraction"] <= 1.0
    assert 0.0 < summary["tick_ms_p99"] < 500.0
    assert summary["snapshot_bytes_per_client_per_s"] > 0
    assert summary["ticks"] > 60  # ~120 ticks in the 4 s window
    for name in PLOT_NAMES:
        assert (out / name).stat().st_size > 1000, name
    assert json.loads((out / "summary.json").read_text())["clients"] == 4


@pytest.mark.timeout(30)
def test_loadtest_exit_2_when_the_given_server_is_down(tmp_path: Path) -> None:
    status = loadtest.main(
        [
            "--url",
            "ws://127.0.0.1:9",
            "--http-url",
            "http://127.0.0.1:9",
            "--rooms",
            "1",
            "--duration",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert status == 2


def test_loadtest_needs_both_urls() -> None:
    with pytest.raises(SystemExit) as exit_info:
        loadtest.main(["--url", "ws://127.0.0.1:9"])
    assert exit_info.value.code == 2


@pytest.mark.timeout(60)
def test_lite_bots_load_the_server_without_being_refused(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    status = bots.main(
        [
            "--url",
            server.ws_url,
            "--rooms",
            "1",
            "--duration",
            "3",
            "--json",
            "--lite",
            "--seed",
            "9",
        ]
    )
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert status == 0
    assert summary["clients"] == 4 and summary["rooms_full"] == 1 and summary["kicked"] == 0
    assert summary["inputs_sent"] > 4 * 60 and summary["shots"] > 0
    assert summary["predictions_compared"] == 0  # no ClientWorld: nothing predicted
    assert scrape(server.http_url).input_violations == 0  # blind FIRE stays within the rate
