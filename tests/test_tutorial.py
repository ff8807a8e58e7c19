"""docs/tutorial.md runs as written: its files, in order, in a fresh folder outside the repository.

The reader's path, replayed: every ```` ```python FILE ```` / ```` ```toml FILE ```` block is
written to FILE in an empty temporary folder (not inside the checkout, so nothing of the
repository is importable by accident); every ```` ```sh ```` block is run there with bash, with
this test run's virtual environment first on PATH (the tutorial's ```` ```sh setup ```` block,
which creates that environment with pip, is the one block not run); ```` ```sh background ````
blocks (the server, the link conditioner: "in a second terminal") are started and left running.
What a block prints is compared with the ```` ```text ```` block after it:

* ``output``: exactly;
* ``output-shape``: line by line after masking numbers, room ids and player ids, with repeated
  lines collapsed (snapshot lines, once-a-second lines: their count depends on timing);
* ``log``: each line (masked, without its ``... `` prefix) appears in the background process's
  log, in order.

The one liberty taken: the shared test machine must not use fixed ports, so the server is
started with ``ASTRANET_WS_PORT=0 ASTRANET_HTTP_PORT=0`` (its environment variables) and the
ports the tutorial names (8788, 8789, and 9788 for the conditioner) are replaced by the ones
actually bound, in commands (``AW_WS_URL`` too) and in the texts compared. examples/tutorial/
must hold exactly the tutorial's files. Bounded: each command has a timeout; the whole replay
takes about 20 s.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from astranet.ecs import Quantized

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "tutorial.md"
EXAMPLE = ROOT / "examples" / "tutorial"
BIN = Path(sys.executable).parent
_FENCE = re.compile(
    r"^```(?P<lang>[\w-]*)(?: (?P<info>[^\n]*))?\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL
)
COMMAND_TIMEOUT_S = 60.0
START_TIMEOUT_S = 20.0
# The ports the tutorial shows (the defaults), replaced by the bound ones.
DOC_WS, DOC_HTTP, DOC_LINK = "8788", "8789", "9788"


@dataclass(frozen=True, slots=True)
class Block:
    lang: str
    info: str
    body: str


def doc_blocks() -> list[Block]:
    text = DOC.read_text(encoding="utf-8")
    return [
        Block(m["lang"], (m["info"] or "").strip(), m["body"].rstrip("\n"))
        for m in _FENCE.finditer(text)
    ]


def file_blocks() -> dict[str, str]:
    return {b.info: b.body + "\n" for b in doc_blocks() if b.lang in ("python", "toml") and b.info}


def shape(text: str) -> list[str]:
    """Lines with ids and numbers masked and repeats collapsed (see the module docstring)."""
    lines: list[str] = []
    for raw in text.strip().splitlines():
        line = " ".join(raw.split())
        line = re.sub(r"room [A-Za-z0-9]{8}\b", "room ROOM", line)
        line = re.sub(r'"room_id": ?"[A-Za-z0-9]{8}"', '"room_id":"ROOM"', line)
        line = re.sub(r"player [0-9a-f]{16}\b", "player PLAYER", line)
        line = re.sub(r"-?\d+(\.\d+)?", "N", line)
        if not lines or lines[-1] != line:
            lines.append(line)
    return lines


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the files -----------------------------------------------------------------------------


def test_the_tutorial_is_complete_files_and_commands() -> None:
    text = DOC.read_text(encoding="utf-8")
    files = file_blocks()
    assert list(files) == [
        "orbs_single.py",
        "orbs_columns.py",
        "orbs.py",
        "orbs_client.py",
        "pyproject.toml",
        "test_orbs.py",
    ]
    assert "WIRE.md" not in text  # not in the repository; protocol.md is
    assert "16 bits per axis" in text and "15 bits" not in text
    # ... and that is what the library makes of the declaration the tutorial shows:
    assert "pos = Quantized(-64.0, 64.0, 1 / GRID, size=2)" in files["orbs_columns.py"]
    assert Quantized(-64.0, 64.0, 1 / 256, size=2).code_bits == (16, 16)
    assert 'asyncio_mode = "auto"' in files["pyproject.toml"]
    assert "from astranet.testing import" in files["test_orbs.py"]
    for name in ("class Summary", "def main("):
        assert name in files["orbs_client.py"]
    assert "dataclass as component" in files["orbs_single.py"]


def test_examples_tutorial_holds_exactly_the_tutorials_files() -> None:
    files = file_blocks()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in EXAMPLE.iterdir() if p.is_file()}
    assert on_disk == files


# -- the replay ----------------------------------------------------------------------------


class Reader:
    """The reader's terminal(s) in their own folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("ASTRANET_", "AW_", "PYTHON"))
        }
        self.env["PATH"] = f"{BIN}{os.pathsep}{self.env.get('PATH', '')}"
        self.ports = {DOC_LINK: str(free_port())}
        self.background: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def substitute(self, text: str) -> str:
        for doc_port, port in self.ports.items():
            text = re.sub(rf"\b{doc_port}\b", port, text)
        return text

    def run(self, script: str) -> str:
        done = subprocess.run(
            ["bash", "-e", "-c", self.substitute(script)],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, f"{script!r} exited {done.returncode}:\n{done.stdout}"
        return done.stdout

    def start(self, script: str) -> Path:
        log = self.folder.parent / f"background-{len(self.background)}.log"
        env = dict(self.env)
        is_server = script.startswith("astranet-server")
        if is_server:
            env.update(ASTRANET_WS_PORT="0", ASTRANET_HTTP_PORT="0")
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {self.substitute(script)}"],
                cwd=self.folder,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.background.append((script, process, log))
        if is_server:
            found = self._wait_for(log, process, re.compile(r"listening ws=(\d+) http=(\d+)"))
            self.ports[DOC_WS], self.ports[DOC_HTTP] = found[1], found[2]
            self.env["AW_WS_URL"] = f"ws://127.0.0.1:{found[1]}"
        else:
            self._wait_for(log, process, re.compile(r"listening|forwarding|127\.0\.0\.1"))
        return log

    @staticmethod
    def _wait_for(log: Path, process: subprocess.Popen[bytes], pattern: re.Pattern[str]):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            found = pattern.search(log.read_text(errors="replace"))
            if found:
                return found
            assert process.poll() is None, log.read_text(errors="replace")
            time.sleep(0.05)  # a log file written by another process: nothing to await
        raise AssertionError(f"no {pattern.pattern!r} in:\n{log.read_text(errors='replace')}")

    def stop_all(self) -> list[int]:
        """Ctrl-C every background process, newest first; their exit codes."""
        codes = []
        for _, process, _ in reversed(self.background):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            codes.append(process.returncode)
        return codes


@pytest.mark.timeout(180)
def test_every_step_runs_as_written_in_a_fresh_folder(tmp_path: Path) -> None:
    folder = tmp_path / "orbs"
    folder.mkdir()
    assert ROOT not in folder.parents
    reader = Reader(folder)
    blocks = doc_blocks()
    output: str | None = None
    log: Path | None = None
    checked = 0
    try:
        for block in blocks:
            if block.lang in ("python", "toml") and block.info:
                (folder / block.info).write_text(block.body + "\n", encoding="utf-8")
            elif block.lang == "sh" and block.info == "setup":
                assert "pip install" in block.body  # this test's venv stands in for it
            elif block.lang == "sh" and block.info == "background":
                log = reader.start(block.body.strip())
            elif block.lang == "sh":
                output = reader.run(block.body)
            elif block.lang == "text" and block.info.startswith("output"):
                assert output is not None, f"no command before {block.body!r}"
                want = reader.substitute(block.body)
                if block.info == "output":
                    assert output.rstrip("\n") == want
                else:
                    assert shape(output) == shape(want), output
                output = None
                checked += 1
            elif block.lang == "text" and block.info == "log":
                assert log is not None
                lines = [" ".join(line.split()) for line in log.read_text().splitlines()]
                masked = [" ".join(shape(line)) for line in lines]
                at = 0
                for wanted in shape(reader.substitute(block.body.replace("... ", ""))):
                    at = next(i for i in range(at, len(masked)) if wanted in masked[i]) + 1
                checked += 1
    finally:
        exits = reader.stop_all()
    assert exits == [0, 0]  # the conditioner and the server both stop cleanly on Ctrl-C
    assert checked >= 9
