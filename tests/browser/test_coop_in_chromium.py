"""End to end in a real headless Chromium: two browser pages and two Python bots in one coop
room for 10 s through the link conditioner at 100 ms RTT.

Asserts: every page joins the same room as the bots and sees all four players move; the
pages' prediction error is exactly 0 except where a drone's contact damage (which no client
can foresee) changed the avatar's hp, i.e. unobstructed movement reconciles exactly; the
team score each page decoded at a server tick equals what the Python bots decoded at that tick;
no page error and no console error. Saves a screenshot to docs/img/browser-coop.png when
ASTRANET_SCREENSHOT=1 (how the committed one was made).

Needs Debian's ``chromium`` (/usr/bin/chromium, or $CHROMIUM) and Playwright for Python (the
``test`` extra); ``playwright install`` is never needed: the system browser is launched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright import sync_api as playwright_api

from astranet.tools.serverproc import ServerProcess
from astranet.tools.webassets import REPO, copy_web_assets

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
PLAY_S = 10.0
# 50 ms each way = 100 ms RTT; ASTRANET_E2E_ONE_WAY_MS=75 checks the 150 ms RTT goal.
ONE_WAY_MS = os.environ.get("ASTRANET_E2E_ONE_WAY_MS", "50")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HP_COLUMN = 4  # Health.hp in the coop state row
SCREENSHOT = REPO / "docs" / "img" / "browser-coop.png"


def _inputs_dropped(http_url: str) -> float:
    """The server's count of inputs it dropped from full queues (astranet_inputs_dropped)."""
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("astranet_inputs_dropped_total "):
                return float(line.split()[1])
    return float("nan")


@pytest.fixture
def server():
    copy_web_assets()
    with ServerProcess() as proc:
        yield proc


@pytest.mark.timeout(120)
def test_two_pages_and_two_bots_play_one_room(server: ServerProcess, tmp_path: Path) -> None:
    assert Path(CHROMIUM).exists(), f"Debian's chromium is needed at {CHROMIUM}"
    bots = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.browser.pybots",
            str(server.ws_port),
            str(PLAY_S),
            ONE_WAY_MS,
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert bots.stdout is not None and bots.stdin is not None
        port = json.loads(bots.stdout.readline())["port"]
        ws_url = f"ws://127.0.0.1:{port}"
        problems: list[str] = []
        with playwright_api.sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"),
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 760, "height": 820},
            )
            pages = []
            for seed in (1, 2):
                page = context.new_page()
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                page.on(
                    "console",
                    lambda m: (
                        problems.append(f"console {m.type}: {m.text}")
                        if m.type == "error"
                        else None
                    ),
                )
                page.goto(f"{server.http_url}/play/?ws={ws_url}&bot=1&seed={seed}")
                page.wait_for_function("window.astranet && window.astranet.world", timeout=15000)
                pages.append(page)
            bots.stdin.write("go\n")
            bots.stdin.flush()
            time.sleep(PLAY_S)
            summaries = [p.evaluate("window.astranet.summary()") for p in pages]
            print(json.dumps([{k: v for k, v in s.items() if k != "scores"} for s in summaries]))
            if os.environ.get("ASTRANET_SCREENSHOT") == "1":
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                pages[0].screenshot(path=str(SCREENSHOT))
            context.close()
        out, _ = bots.communicate(timeout=30)
        report = json.loads(out.strip().splitlines()[-1])["bots"]
        dropped = _inputs_dropped(server.http_url)
    finally:
        if bots.poll() is None:
            bots.kill()
            bots.wait()

    assert problems == []
    rooms = {s["roomId"] for s in summaries} | {b["room_id"] for b in report}
    assert len(rooms) == 1, rooms
    for s in summaries:
        assert s["error"] is None and s["decodeFailures"] == 0, s
        assert s["playersSeen"] == 4 and s["playersMoved"] == 4, s
        # Movement is predicted exactly; the only mispredictions allowed are obstructed ones:
        # a drone's contact damage (hp, column 4) that the client cannot foresee, or an input
        # the server dropped from a full queue (a host too loaded to tick on time; the client
        # paces its inputs to avoid that, see js/src/world.js MAX_INPUT_LEAD): at most one
        # misprediction per dropped input.
        assert s["compared"] > 100, s
        unexplained = [m for m in s["mismatches"] if HP_COLUMN not in m["columns"]]
        message = f"server dropped {dropped} inputs; " + json.dumps(unexplained[:4])
        assert len(unexplained) <= dropped, message
        assert s["compared"] - s["exact"] == len(s["mismatches"]), s  # none scrolled out
    # The score every client decoded at a given server tick is the server's, so they agree.
    python_scores: dict[str, float] = {}
    for bot in report:
        assert bot["joined"] and bot["error"] is None, bot
        python_scores.update(bot["scores"])
    common = 0
    for s in summaries:
        for tick, score in s["scores"].items():
            if tick in python_scores:
                assert score == python_scores[tick], (tick, score, python_scores[tick])
                common += 1
    assert common > 30  # ticks both a page and a bot decoded (fewer on a loaded host)
    assert max(python_scores.values()) >= 0
