"""Movement sanity (impossible speed) and TLS (wss://) end to end."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from astranet.examples.dots import SPEED, encode_input, game
from astranet.systems.input_ingestion import MAX_VIOLATIONS

from .conftest import DecodedView, Running, StartServer, WireClient, metric_value

pytestmark = pytest.mark.timeout(30)

CHEAT = struct.pack("<bb", 127, 127)  # |(127, 127)| = 1.41 x the max speed
STEP = SPEED / 30  # one input's worth of movement at 30 Hz


async def test_impossible_speed_is_counted_refused_and_kicked(running: Running) -> None:
    cheater = await running.joined_client()
    honest = await running.joined_client()
    net_id = cheater.joined.entity  # type: ignore[union-attr]
    view = DecodedView(game.schema)
    view.apply(await cheater.next_snapshot())
    start = view.position(net_id)

    # One cheat per snapshot (paced like a real client), watching the avatar each time.
    for _ in range(MAX_VIOLATIONS - 1):
        frame = await cheater.send_input(CHEAT)
        snapshot = await cheater.snapshot_where(lambda s, seq=frame.seq: s.last_input_seq == seq)
        view.apply(snapshot)
        # Refused: the avatar stands still instead of moving diagonally at 1.41x speed.
        assert np.array_equal(view.position(net_id), start)
    text = await running.metrics()
    assert metric_value(text, "astranet_input_violations_total") == MAX_VIOLATIONS - 1

    await cheater.send_input(CHEAT)  # the violation that crosses the limit
    code, reason = await cheater.closed()
    assert code == 1008 and reason.startswith("movement sanity")
    await running.ended(cheater)
    text = await running.metrics()
    assert metric_value(text, "astranet_kicks_total", reason="movement_sanity") == 1

    # The honest player in the same room keeps playing at normal speed.
    honest_id = honest.joined.entity  # type: ignore[union-attr]
    honest_view = DecodedView(game.schema)
    honest_view.apply(await honest.next_snapshot())
    before = honest_view.position(honest_id)
    frame = await honest.send_input(encode_input(1.0, 0.0))
    honest_view.apply(await honest.snapshot_where(lambda s: s.last_input_seq == frame.seq))
    assert honest_view.position(honest_id)[0] - before[0] == pytest.approx(STEP, abs=2 / 512)


async def test_input_burst_never_moves_faster_than_the_max_speed(running: Running) -> None:
    client = await running.joined_client()
    net_id = client.joined.entity  # type: ignore[union-attr]
    view = DecodedView(game.schema)
    first = await client.next_snapshot()
    view.apply(first)
    start = view.position(net_id)
    for _ in range(40):  # far more than one per tick: credit caps what gets applied
        await client.send_input(encode_input(1.0, 0.0))
    later = await client.snapshot_where(lambda s: s.server_tick >= first.server_tick + 10)
    view.apply(later)
    ticks = later.server_tick - first.server_tick
    assert view.position(net_id)[0] - start[0] <= (ticks + 3) * STEP + 1e-6


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.mark.skipif(
    shutil.which("openssl") is None,
    reason="needs the openssl CLI (the cryptography package is not installed)",
)
async def test_play_over_wss(serve: StartServer, tmp_path: Path) -> None:
    cert, key = await asyncio.to_thread(_self_signed, tmp_path)
    running = await serve("--tls-cert", str(cert), "--tls-key", str(key))
    trust = ssl.create_default_context(cafile=str(cert))
    client = await WireClient.open(f"wss://127.0.0.1:{running.server.ws_port}", tls=trust)
    joined = await client.join()
    view = DecodedView(game.schema)
    view.apply(await client.next_snapshot())
    start = view.position(joined.entity)  # type: ignore[arg-type]
    frame = await client.send_input(encode_input(0.0, 1.0))
    view.apply(await client.snapshot_where(lambda s: s.last_input_seq == frame.seq))
    assert view.position(joined.entity)[1] - start[1] == pytest.approx(STEP, abs=2 / 512)  # type: ignore[arg-type]
    # A plain ws:// client cannot talk to the TLS port.
    with pytest.raises(Exception):  # noqa: B017 - handshake failure type varies
        await WireClient.open(f"ws://127.0.0.1:{running.server.ws_port}")
