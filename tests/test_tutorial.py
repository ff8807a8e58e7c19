"""docs/tutorial.md stays true: its code is the step files, and every step runs.

The doc cannot drift from the code: every ```python block in it names the file region it quotes
(```` ```python astranet/examples/tutorial/step0_single_player.py:loop ````) and must be identical
to the
text between that file's ``# --8<-- [start:loop]`` / ``[end:loop]`` markers; every region must
be quoted; every ```` ```text output:MODULE ```` block must be exactly what ``MODULE.main()``
prints. Then each step runs: step 0 and 1 for 300 frames, step 2's input contract (hypothesis),
step 3's documented command as a real ``astranet-server`` process with ``/rooms``, step 4's
client for two seconds against an in-process server, and step 5's test (collected from
astranet/examples/tutorial/step5_test.py). Everything is on 127.0.0.1 and bounded by pytest-timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import json
import math
import re
import socket
import subprocess
import sys
import threading
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import esper
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astranet.client import ClientOptions, GameClient
from astranet.ecs import ColumnStore
from astranet.examples.tutorial import step0_single_player as step0
from astranet.examples.tutorial import step1_columns as step1
from astranet.examples.tutorial import step2_game as step2
from astranet.examples.tutorial import step4_client as step4

# Step 5 *is* a test: importing it here lets pytest collect it (and its fixture) in this run.
from astranet.examples.tutorial.step5_test import (  # noqa: F401
    orbs_server,
    test_holding_right_moves_the_player_right,
)
from astranet.game import InputError, SimContext, load_game
from astranet.server.app import GameServer
from astranet.server.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "tutorial.md"
STEPS = ROOT / "astranet" / "examples" / "tutorial"
# A fence line with an optional source: ```python path:region  or  ```text output:module
_FENCE = re.compile(
    r"^```(?P<lang>[\w-]*)(?: (?P<source>\S+))?\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL
)
_MARKER = re.compile(r"^\s*# --8<-- \[(?P<edge>start|end):(?P<name>[\w-]+)\]\s*$")
SERVER_START_TIMEOUT_S = 15.0  # a cold interpreter importing numpy and websockets
HTTP_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Block:
    lang: str
    source: str | None
    body: str
    line: int


def doc_blocks() -> list[Block]:
    text = DOC.read_text()
    return [
        Block(m["lang"], m["source"], m["body"].rstrip("\n"), text.count("\n", 0, m.start()) + 1)
        for m in _FENCE.finditer(text)
    ]


def file_regions(path: Path) -> dict[str, str]:
    """``{name: text}`` of every marked region of ``path``; markers must nest nowhere."""
    regions: dict[str, str] = {}
    open_name: str | None = None
    lines: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        marker = _MARKER.match(line)
        if marker is None:
            if open_name is not None:
                lines.append(line)
            continue
        edge, name = marker["edge"], marker["name"]
        if edge == "start":
            assert open_name is None, f"{path}:{number}: region {name} opens inside {open_name}"
            assert name not in regions, f"{path}:{number}: region {name} declared twice"
            open_name, lines = name, []
        else:
            assert open_name == name, f"{path}:{number}: end:{name} closes {open_name}"
            # ruff format puts blank lines before a region's end marker; they are not code
            regions[name], open_name = "\n".join(lines).rstrip("\n"), None
    assert open_name is None, f"{path}: region {open_name} is never closed"
    return regions


def all_regions() -> dict[str, str]:
    """``{"astranet/examples/tutorial/FILE.py:name": text}`` over every step file."""
    return {
        f"{path.relative_to(ROOT)}:{name}": text
        for path in sorted(STEPS.glob("*.py"))
        for name, text in file_regions(path).items()
    }


QUOTED = [block for block in doc_blocks() if block.lang == "python"]
OUTPUTS = [block for block in doc_blocks() if (block.source or "").startswith("output:")]

# -- the doc is the code ---------------------------------------------------------------------


def test_the_doc_quotes_code_and_shows_output() -> None:
    assert len(QUOTED) >= 8 and len(OUTPUTS) >= 2


@pytest.mark.parametrize("block", QUOTED, ids=lambda b: f"line{b.line}")
def test_every_python_block_is_identical_to_its_file_region(block: Block) -> None:
    regions = all_regions()
    assert block.source in regions, (
        f"docs/tutorial.md:{block.line}: a python block must name a region of a step file "
        f"(```python astranet/examples/tutorial/FILE.py:REGION), got {block.source!r}"
    )
    assert block.body == regions[block.source], (
        f"docs/tutorial.md:{block.line} differs from {block.source}: copy the region again"
    )


def test_every_region_is_quoted_exactly_once() -> None:
    quoted = [block.source for block in QUOTED]
    assert sorted(quoted) == sorted(all_regions())


@pytest.fixture
def fresh_world() -> Iterator[str]:
    """A new esper world for a step's loop, deleted afterwards (worlds are process-global)."""
    name = f"tutorial-test-{next(_worlds)}"
    esper.switch_world(name)
    try:
        yield name
    finally:
        esper.switch_world("default")
        esper.delete_world(name)


_worlds = itertools.count()


@pytest.mark.parametrize("block", OUTPUTS, ids=lambda b: b.source)
def test_documented_output_is_what_the_step_prints(
    block: Block, fresh_world: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert block.source is not None
    module = importlib.import_module(block.source.removeprefix("output:"))
    module.play(frames=300)  # what main() runs, in this test's world instead of main()'s
    assert capsys.readouterr().out.rstrip("\n") == block.body


# -- step 0 and step 1: the single-player loops ----------------------------------------------


def test_step0_the_player_collects_orbs_inside_the_arena(fresh_world: str) -> None:
    pos, score = step0.play(frames=300, report_every=10**9)
    assert score.points >= 3  # the bot heads for orbs; each takes well under 100 frames
    assert abs(pos.x) <= step0.ARENA and abs(pos.y) <= step0.ARENA
    assert len(esper.get_component(step0.Orb)) == step0.ORBS  # collected orbs come back


def test_step1_the_columns_loop_plays_the_same_game(fresh_world: str) -> None:
    store = step1.play(frames=300, report_every=10**9)
    player = store["Body.kind"] == step1.PLAYER
    assert int(player.sum()) == 1 and int((store["Body.kind"] == step1.ORB).sum()) == step1.ORBS
    assert store["Score.points"][player][0] >= 3
    assert np.all(np.abs(store["Body.pos"]) <= step0.ARENA)


def _store(players: list[tuple[float, float]], orbs: list[tuple[float, float]]) -> ColumnStore:
    store = ColumnStore(step1.SCHEMA)
    store.spawn(len(players), Body__pos=np.reshape(players, (-1, 2)), Body__kind=step1.PLAYER)
    store.spawn(len(orbs), Body__pos=np.reshape(orbs, (-1, 2)), Body__kind=step1.ORB)
    return store


def test_step1_collect_scores_each_touched_orb_once_and_moves_it(fresh_world: str) -> None:
    # Players at 0 and 0.5; orb A touches both, orb B only the second, orb C nobody.
    store = _store([(0.0, 0.0), (0.5, 0.0)], [(0.25, 0.0), (1.25, 0.0), (10.0, 10.0)])
    step1.CollectSystem(np.random.default_rng(0)).process(SimContext(store))
    assert store["Score.points"].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]  # A -> first, B -> second
    orbs = store["Body.pos"][2:]
    assert not np.allclose(orbs[0], (0.25, 0.0)) and not np.allclose(orbs[1], (1.25, 0.0))
    assert orbs[2].tolist() == [10.0, 10.0]
    assert np.array_equal(step1.snap(orbs), orbs)  # respawned on the replication grid


def test_step1_collect_with_no_player_or_no_orb_does_nothing() -> None:
    for store in (_store([], [(1.0, 1.0)]), _store([(1.0, 1.0)], [])):
        before = [column.copy() for column in store.columns()]
        step1.CollectSystem(np.random.default_rng(0)).process(SimContext(store))
        assert all(np.array_equal(a, b) for a, b in zip(before, store.columns(), strict=True))


# -- step 2: the input contract ----------------------------------------------------------------

_stick = st.tuples(st.integers(-128, 127), st.integers(-128, 127))


@settings(max_examples=300)
@given(st.lists(_stick, max_size=120))
def test_step2_apply_input_stays_on_the_grid_and_in_the_arena(commands: list[tuple[int, int]]):
    """What makes prediction exact: the server's state survives quantization unchanged."""
    sim = SimContext(ColumnStore(step2.game.schema), authoritative=False)
    net_id = int(sim.store.spawn(1, Body__kind=step1.PLAYER)[0])
    for command in commands:
        step2.game.apply_input(sim, net_id, command)
    pos = sim.store["Body.pos"]
    encoding = step1.Body.pos
    assert np.array_equal(encoding.dequantize(encoding.quantize(pos)), pos)
    assert np.all(np.abs(pos) <= step0.ARENA)


@settings(max_examples=500)
@given(st.floats(-math.pi, math.pi), st.floats(0.0, 1.0))
def test_step2_any_real_stick_position_passes_the_speed_check(angle: float, tilt: float):
    blob = step2.encode_input(tilt * math.cos(angle), tilt * math.sin(angle))
    command = step2.game.decode_input(blob)
    assert step2.game.check_input(SimContext(ColumnStore(step2.game.schema)), 1, command) is None


@pytest.mark.parametrize("command", [(127, 127), (-128, 0), (100, -100)])
def test_step2_a_faster_than_possible_stick_is_refused(command: tuple[int, int]) -> None:
    sim = SimContext(ColumnStore(step2.game.schema))
    assert step2.game.check_input(sim, 1, command) == "impossible speed"


@settings(max_examples=300)
@given(st.binary(max_size=8).filter(lambda blob: len(blob) != 2))
def test_step2_a_blob_of_the_wrong_size_is_an_input_error(blob: bytes) -> None:
    with pytest.raises(InputError):
        step2.game.decode_input(blob)


@given(_stick)
def test_step2_decode_reads_what_the_bytes_say(command: tuple[int, int]) -> None:
    assert step2.game.decode_input(bytes(np.array(command, np.int8))) == command


def test_step2_loads_as_the_server_loads_it() -> None:
    assert load_game("astranet.examples.tutorial.step2_game:game") is step2.game


# -- step 3: the documented command, as a real process -----------------------------------------


class ServerProcess:
    """``astranet-server`` with the tutorial's flags on free ports; its log read by a thread."""

    def __init__(self, cwd: Path) -> None:
        script = Path(sys.executable).with_name("astranet-server")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "astranet.server"]
        self.process = subprocess.Popen(
            [
                *command,
                "--game",
                "astranet.examples.tutorial.step2_game:game",
                "--db",
                "orbs.db",
                "--host",
                "127.0.0.1",
                "--ws-port",
                "0",
                "--http-port",
                "0",
            ],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.log: deque[str] = deque(maxlen=200)  # bounded: only for failure messages
        self.ports: tuple[int, int] | None = None
        self.listening = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:  # drained to the end, so the pipe never fills
            self.log.append(line)
            found = re.search(r"listening ws=(\d+) http=(\d+)", line)
            if found:
                self.ports = (int(found[1]), int(found[2]))
                self.listening.set()
        self.listening.set()  # the process ended: wake the waiter either way

    def stop(self) -> int:
        """SIGTERM, as an operator would: the server must exit 0 (WIRE rule 8)."""
        self.process.terminate()
        return self.process.wait(timeout=10)


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path)
    try:
        assert server.listening.wait(SERVER_START_TIMEOUT_S) and server.ports is not None, (
            "astranet-server did not report its ports:\n" + "".join(server.log)
        )
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=10)


def _get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
        return json.loads(response.read())


@pytest.mark.timeout(30)
async def test_step3_the_served_game_shows_up_in_rooms(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    assert server_process.ports is not None
    ws_port, http_port = server_process.ports
    rooms_url = f"http://127.0.0.1:{http_port}/rooms"
    assert await asyncio.to_thread(_get_json, rooms_url) == []
    client = GameClient(ClientOptions(url=f"ws://127.0.0.1:{ws_port}", game_mode="orbs"))
    accepted = await client.connect()
    try:
        rooms = await asyncio.to_thread(_get_json, rooms_url)
        assert isinstance(rooms, list) and len(rooms) == 1
        room = rooms[0]
        assert (room["room_id"], room["game_mode"], room["players"], room["capacity"]) == (
            accepted.room_id,
            "orbs",
            1,
            4,
        )
    finally:
        await client.close()
    assert await asyncio.to_thread(server_process.stop) == 0
    assert (tmp_path / "orbs.db").exists()  # --db orbs.db, relative to where it was started


# -- step 4: the headless client ---------------------------------------------------------------


@pytest.fixture
async def in_process_server(tmp_path: Path) -> AsyncIterator[GameServer]:
    config = parse_config(
        [
            "--host",
            "127.0.0.1",
            "--ws-port",
            "0",
            "--http-port",
            "0",
            "--db",
            str(tmp_path / "orbs.db"),
        ],
        {},
    )
    server = GameServer(config, step2.game)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown()
        esper.switch_world("default")


@pytest.mark.timeout(30)
async def test_step4_the_client_plays_predicts_and_reports(in_process_server: GameServer) -> None:
    lines: list[str] = []
    summary = await step4.play(
        f"ws://127.0.0.1:{in_process_server.ws_port}", duration_s=2.0, out=lines.append
    )
    assert lines[0].startswith("joined room ")
    assert any(line.startswith("t=1s me (") for line in lines)
    assert summary.end != summary.start  # it moved
    assert all(abs(v) <= step0.ARENA for v in summary.end)
    assert summary.frames >= 60 and summary.predictions_compared >= 20
    # Movement is predicted bit-exactly; only scoring (server-only) can disagree: at most one
    # correction per orb collected, plus one for a collection still in flight at the end.
    assert summary.predictions_compared - summary.predictions_exact <= summary.score + 1


@pytest.mark.timeout(30)
def test_step4_main_exits_2_with_a_message_when_it_cannot_connect(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with contextlib.closing(socket.socket()) as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert step4.main(["--url", f"ws://127.0.0.1:{port}", "--duration", "1"]) == 2
    assert "cannot connect" in capsys.readouterr().err
