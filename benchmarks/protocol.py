"""Benchmark of the sans-I/O protocol hot paths (astranet.net), in microseconds per op.

Cases: encode+decode an InputFrame (16-byte blob), encode+decode a Snapshot envelope with a
1 KiB payload, sign+verify one frame with a session's ``InputSigner``, and the full
server-side InputFrame path, ``ServerConnection.receive_data`` (rate limit, decode,
validation, HMAC verify, replay check) plus ``messages_received``. Goal: < 10 us median.

Each case runs ``--number`` ops per repetition and ``--repeat`` repetitions; the table shows
the median (and min) of the per-op times. ``--json`` prints one JSON object instead.

    .venv/bin/python benchmarks/protocol.py [--repeat 7] [--number 20000] [--json]

The same cases run under pytest-benchmark in ``benchmarks/test_bench_protocol.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from astranet.net.messages import (
    Hello,
    InputFrame,
    JoinAccepted,
    Snapshot,
    decode_client_message,
    decode_server_message,
    encode,
)
from astranet.net.ratelimit import RateLimitConfig
from astranet.net.server_conn import ServerConnection
from astranet.net.signing import InputSigner

KEY = bytes(range(32))
BLOB = bytes(16)  # a typical game input: buttons + two axes, padded
PAYLOAD = bytes(range(256)) * 4  # 1 KiB snapshot body
# The full path must not be throttled while we hammer it; same code path, huge budget.
UNTHROTTLED = RateLimitConfig(rate_per_s=1e12, burst=1e12)


def signed_frames(count: int, first_seq: int = 1) -> list[bytes]:
    signer = InputSigner(KEY)
    return [
        encode(InputFrame(seq, seq * 33, BLOB, signer.sign(seq, seq * 33, BLOB)))
        for seq in range(first_seq, first_seq + count)
    ]


def session_in_room() -> ServerConnection:
    conn = ServerConnection(rate_limit=UNTHROTTLED)
    conn.receive_data(encode(Hello(1)))
    conn.send(JoinAccepted("Bench001", "p1", 30, KEY, b"tok", 1))
    conn.messages_received()
    conn.data_to_send()
    return conn


def op_input_codec() -> Callable[[], object]:
    frame = InputFrame(7, 123_456, BLOB, bytes(16))
    return lambda: decode_client_message(encode(frame))


def op_snapshot_codec() -> Callable[[], object]:
    snap = Snapshot(7, 123_456, 6, True, PAYLOAD, 99)
    return lambda: decode_server_message(encode(snap))


def op_sign_verify() -> Callable[[], object]:
    signer = InputSigner(KEY)
    return lambda: signer.verify(7, 123_456, BLOB, signer.sign(7, 123_456, BLOB))


def run_server_path(conn: ServerConnection, frames: list[bytes]) -> None:
    """The shell's per-message work: receive, then drain the events."""
    receive, drain = conn.receive_data, conn.messages_received
    for data in frames:
        receive(data)
        drain()


def _time_per_op(op: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        op()
    return (time.perf_counter() - start) / number


def measure(repeat: int, number: int) -> dict[str, dict[str, float]]:
    results: dict[str, list[float]] = {}
    simple = {
        "InputFrame encode+decode": op_input_codec(),
        "Snapshot 1 KiB encode+decode": op_snapshot_codec(),
        "sign+verify": op_sign_verify(),
    }
    for name, op in simple.items():
        results[name] = [_time_per_op(op, number) for _ in range(repeat)]
    frames = signed_frames(number)
    path: list[float] = []
    for _ in range(repeat):
        conn = session_in_room()  # fresh replay guard each repetition
        start = time.perf_counter()
        run_server_path(conn, frames)
        path.append((time.perf_counter() - start) / number)
        assert conn.stats.inputs_accepted == number, "frames were rejected"
    results["server InputFrame path"] = path
    return {
        name: {"median_us": statistics.median(times) * 1e6, "min_us": min(times) * 1e6}
        for name, times in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    results = measure(args.repeat, args.number)
    if args.json:
        print(json.dumps({"repeat": args.repeat, "number": args.number, "results": results}))
        return
    print(f"{'case':32} {'median us':>10} {'min us':>10}   ({args.repeat} x {args.number} ops)")
    for name, row in results.items():
        print(f"{name:32} {row['median_us']:10.2f} {row['min_us']:10.2f}")


if __name__ == "__main__":
    main()
