"""pytest-benchmark cases for the protocol hot paths; the ops live in benchmarks/protocol.py.

Run: ``.venv/bin/python -m pytest benchmarks/test_bench_protocol.py --benchmark-only``.
The server-path case processes a batch of ``BATCH`` frames per round (a replay guard only
accepts each seq once), so divide its times by ``BATCH`` for per-frame figures.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "astranet_bench_protocol", Path(__file__).with_name("protocol.py")
)
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

BATCH = 1000


def test_input_frame_encode_decode(benchmark) -> None:
    benchmark(bench.op_input_codec())


def test_snapshot_1kib_encode_decode(benchmark) -> None:
    benchmark(bench.op_snapshot_codec())


def test_sign_verify(benchmark) -> None:
    assert benchmark(bench.op_sign_verify())


def test_server_input_frame_path_batch_of_1000(benchmark) -> None:
    frames = bench.signed_frames(BATCH)

    def setup():
        return (bench.session_in_room(), frames), {}

    def run(conn, batch) -> None:
        bench.run_server_path(conn, batch)
        assert conn.stats.inputs_accepted == BATCH

    benchmark.pedantic(run, setup=setup, rounds=30)
