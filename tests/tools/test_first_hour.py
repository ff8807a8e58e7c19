"""Issue 11 item 5: the tools behave on a new user's first hour (each test failed before).

Ctrl-C on astranet-loadtest, a taken port for astranet-linkconditioner, astranet-bots when the
server dies, astranet-coop without a display, AW_REGION shared by server and client, a --db
path with a space, two servers on one database, and a coop window that fits an 800 px screen.
Everything runs on 127.0.0.1 with free ports; every process started here is stopped here.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from astranet.client.demo import EXIT_OK, _parser, run
from astranet.client.events import region_from_env
from astranet.errors import ConfigurationError
from astranet.net import linkconditioner
from astranet.server.config import parse_config
from astranet.testing import TestServer
from astranet.tools.bots import EXIT_DEGRADED
from astranet.tools.serverproc import ServerProcess, ServerStartError

BIN = Path(sys.executable).parent


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASTRANET_", "AW_"))}
    return {**env, **extra}


@pytest.mark.timeout(90)
def test_ctrl_c_on_the_load_test_exits_130_without_a_traceback(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            str(BIN / "astranet-loadtest"),
            "--rooms",
            "1",
            "--duration",
            "30",
            "--lite",
            "--workers",
            "1",
            "--out",
            str(tmp_path / "out"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_clean_env(),
        start_new_session=True,  # its own process group, like a terminal's job
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:  # the server is up and the bot workers are starting
            if line.startswith("server pid"):
                break
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole group gets SIGINT
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, rest
    assert "Traceback" not in rest
    assert "astranet-loadtest: interrupted" in rest


def test_the_link_conditioner_on_a_taken_port_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = linkconditioner.main(["--listen", f"127.0.0.1:{port}", "--target", "127.0.0.1:9"])
    err = capsys.readouterr().err
    assert status == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err


@pytest.mark.timeout(90)
def test_bots_exit_non_zero_when_the_server_dies_mid_run() -> None:
    with ServerProcess("astranet.examples.coop:game") as server:
        bots = subprocess.Popen(
            [
                str(BIN / "astranet-bots"),
                "--url",
                server.ws_url,
                "--rooms",
                "1",
                "--lite",
                "--duration",
                "5",
                "--workers",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_clean_env(),
        )
        try:
            joined = re.compile(r"(joined room.*\n.*){4}", re.DOTALL)
            server.wait_for_log(joined, timeout_s=60)  # all four bots are playing
            server.kill()  # the server dies mid-run
            status = bots.wait(timeout=60)
        finally:
            if bots.poll() is None:
                bots.kill()
                bots.wait()
    assert status == EXIT_DEGRADED


def test_the_coop_window_without_a_display_exits_5(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from astranet.examples.coop.client import EXIT_DISPLAY, main

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--url", "ws://127.0.0.1:9", "--duration", "1"]) == EXIT_DISPLAY == 5
    assert "no display" in capsys.readouterr().err


def test_the_coop_window_fits_an_800_px_screen_with_its_controls_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    from astranet.examples.coop import client

    client.pygame.display.init()
    client.pygame.font.init()
    try:
        renderer = client.Renderer(client.pygame.Surface(client.WINDOW_SIZE))
        width, height = client.WINDOW_SIZE
        controls_bottom = renderer.arena_rect.bottom + 4 + 18 + renderer.controls_hint.get_height()
        assert height <= 800 and width <= 800
        assert controls_bottom <= height  # the controls line is inside the window
    finally:
        client.pygame.quit()


def test_a_client_takes_the_first_region_of_the_servers_aw_region_list() -> None:
    assert region_from_env({"AW_REGION": "eu-central,us-east"}) == "eu-central"
    assert region_from_env({"AW_REGION": " us-west "}) == "us-west"
    assert region_from_env({}) == "us-east"


@pytest.mark.timeout(30)
async def test_one_aw_region_for_server_and_client_plays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AW_REGION", "eu-central,us-east")
    regions = parse_config([], dict(os.environ)).regions
    assert list(regions) == ["eu-central", "us-east"]
    async with TestServer("astranet.examples.dots:game", "--regions", ",".join(regions)) as server:
        lines: list[str] = []
        args = _parser().parse_args(
            ["--url", server.url, "--game", "astranet.examples.dots:game", "--duration", "0.5"]
        )
        assert args.region == "eu-central"
        assert await run(args, lines.append) == EXIT_OK, lines


def test_db_accepts_a_path_with_a_space(tmp_path: Path) -> None:
    assert parse_config(["--db", "My Games/orbs.db"], {}).db == "My Games/orbs.db"
    with pytest.raises(ConfigurationError, match="--db"):
        parse_config(["--db", "  "], {})
    folder = tmp_path / "my games"
    folder.mkdir()
    with ServerProcess("astranet.examples.dots:game", db=folder / "orbs game.db") as server:
        assert server.ws_port > 0
    assert (folder / "orbs game.db").exists()


def test_two_servers_on_one_database_the_second_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    with ServerProcess("astranet.examples.dots:game", db=db) as first:
        with pytest.raises(ServerStartError) as refused:
            ServerProcess("astranet.examples.dots:game", db=db).close()
        message = str(refused.value)
        assert f"in use by another astranet-server (pid {first.pid})" in message
        assert "give each its own --db" in message
    # The first one's lock went with it: a server may use the file again.
    with ServerProcess("astranet.examples.dots:game", db=db) as again:
        assert again.ws_port > 0


def test_the_library_does_not_import_its_examples() -> None:
    """The tools take the game by its --game spec string; nothing outside astranet/examples
    imports it (issue 11: the library depended on its examples)."""
    code = (
        "import sys, astranet.tools, astranet.tools.loadtest, astranet.tools.bots,"
        " astranet.server.cli, astranet.client.demo, astranet.testing;"
        " print([m for m in sys.modules if m.startswith('astranet.examples')])"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert loaded == "[]"
