"""Benchmark of the protocol and edge hot paths, in microseconds per op.

Cases: encode+decode an InputFrame (16-byte blob), encode+decode a Snapshot envelope with a
1 KiB payload, sign+verify one frame with a session's ``InputSigner``, the sans-I/O
server-side InputFrame path, ``ServerConnection.receive_data`` (rate limit, decode,
validation, HMAC verify, replay check) plus ``messages_received``, and two edge cases on a
real :class:`~astranet.server.session.Session` (``asyncio.Protocol``) with a null transport:

* "edge InputFrame path": ``data_received`` of one masked WebSocket frame holding a signed
  InputFrame with a folded ack: the edge's frame check, the protocol core, metrics, and a host
  whose ``handle`` queues the input and applies the ack as the game server does
  (goal, issue 12: <= 8 us); "..., 3 per read": the same frames three to a read, as a busy
  loop finds them (the frame splitter's loop instead of the one-frame check);
* "edge InputFrame path, GameServer" (and "..., 3 per read"): the same, with the real
  :class:`~astranet.server.app.GameServer` (not started: no ports, no ticks) as the host, the
  session seated in a dots room by its own FindOrCreate: ``GameServer.handle``,
  ``RoomHost.on_input``, the seat's ``InputQueue`` and ``GameServer._ack`` (each frame acks
  a snapshot the seat's baseline holds, as a playing client's do). The queue is emptied
  every two reads, standing in for the tick's ``take``;
* "snapshot send per client": one room's tick for 4 clients sharing one ~100-byte payload,
  per client: envelope (built once, seq spliced in), frame header, ``transport.write``,
  counters (goal: <= 4 us; the send() syscall itself is the kernel's and not included);
* "websockets parse only": ``ServerProtocol.receive_data`` + ``events_received`` of the same
  frame, the share of the edge path that is websockets' own.

Each case runs ``--number`` ops per repetition and ``--repeat`` repetitions; the table shows
the median (and min) of the per-op times, in this process's CPU time (``--clock cpu``, the
default: time the machine gave to other processes does not count; ``--clock wall`` for
perf_counter, the figures before 2026-12-03). ``--json`` prints one JSON object instead.

    .venv/bin/python benchmarks/protocol.py [--repeat 7] [--number 20000] [--clock cpu] [--json]

The same cases run under pytest-benchmark in ``benchmarks/test_bench_protocol.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace

from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from astranet.game import load_game
from astranet.net.messages import (
    Ack,
    FindOrCreate,
    Hello,
    InputFrame,
    JoinAccepted,
    Snapshot,
    decode_client_message,
    decode_server_message,
    encode,
)
from astranet.net.ratelimit import FloodGuard, RateLimitConfig
from astranet.net.server_conn import ServerConnection
from astranet.net.signing import InputSigner
from astranet.replication import ClientBaseline, EncodedSnapshot
from astranet.server.app import GameServer
from astranet.server.config import ServerConfig, parse_config
from astranet.server.metrics import ServerMetrics
from astranet.server.session import Session, SnapshotEnvelopes
from astranet.systems import InputQueue

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


class NullTransport(asyncio.Transport):
    """Takes writes and drops them: measures our work, not the kernel's send()."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written += len(data)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        return None

    def is_closing(self) -> bool:
        return False


class BenchHost:
    """The SessionHost part of the game server that the per-message path runs."""

    def __init__(self) -> None:
        self.config = ServerConfig()
        self.metrics = ServerMetrics()
        self.envelopes = SnapshotEnvelopes()
        self.ws_origins = None
        self.authenticate = None
        self.game = SimpleNamespace(schema=SimpleNamespace(fingerprint=None))

    def admit_connection(self, session: Session) -> bool:
        return True

    def connection_lost_unopened(self, session: Session) -> None:
        return None

    def session_opened(self, session: Session) -> None:
        return None

    def handle(self, session: Session, message: object) -> None:
        # As GameServer.handle: queue the input, apply its folded ack.
        player = session.player
        if type(message) is InputFrame:
            player.inputs.push(message.seq, message.input_blob)
            player.last_accepted_seq = message.seq
            if message.ack is not None:
                player.baseline.ack(message.ack)
        elif type(message) is Ack:
            player.baseline.ack(message.snapshot_id)

    def note_close(self, session: Session, code: int, reason: str) -> None:
        raise AssertionError(f"closed {code} {reason}")

    def note_oversized_snapshot(self, session: Session, exc: Exception) -> None:
        raise AssertionError(exc)

    def session_ended(self, session: Session) -> None:
        return None


_UPGRADE = (
    b"GET /?token=x HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def ws_frame(data: bytes) -> bytes:
    """A client's (masked) binary frame."""
    return Frame(Opcode.BINARY, data).serialize(mask=True, extensions=[])


def edge_session(host: BenchHost | None = None) -> Session:
    """A Session that completed its upgrade, Hello and JoinAccepted (needs a running loop)."""
    host = host or BenchHost()
    session = Session(host)
    session.conn._flood = FloodGuard(UNTHROTTLED, time.monotonic)  # real code, huge budget
    session.connection_made(NullTransport())
    session.data_received(_UPGRADE)
    session.data_received(ws_frame(encode(Hello(1, compact=True))))
    session.player = SimpleNamespace(  # type: ignore[assignment]
        inputs=InputQueue("p1", 1), baseline=ClientBaseline(), last_accepted_seq=None
    )
    session.send(JoinAccepted("Bench001", "p1", 30, KEY, b"tok", 1))
    return session


def acking_ws_frames(signer: InputSigner, number: int) -> list[bytes]:
    """Masked WebSocket frames of signed InputFrames 1..number, each acking its own seq."""
    return [
        ws_frame(encode(InputFrame(seq, seq * 33, BLOB, signer.sign(seq, seq * 33, BLOB), seq)))
        for seq in range(1, number + 1)
    ]


def in_reads(frames: list[bytes], per_read: int) -> list[bytes]:
    """``frames`` joined ``per_read`` to a read, as the socket would hand them over."""
    return [b"".join(frames[index : index + per_read]) for index in range(0, len(frames), per_read)]


GAME = "astranet.examples.dots:game"


async def game_server_session(number: int) -> Session:
    """A Session of a real (unstarted) GameServer, seated in a room by its FindOrCreate, whose
    baseline holds snapshots 1..number as sent (so every frame's ack is one it can use)."""
    config = parse_config(["--game", GAME, "--ws-port", "0", "--http-port", "0"], {})
    server = GameServer(config, load_game(GAME))
    session = Session(server)
    session.conn._flood = FloodGuard(UNTHROTTLED, time.monotonic)  # real code, huge budget
    session.connection_made(NullTransport())
    session.data_received(_UPGRADE)
    session.data_received(ws_frame(encode(Hello(1, compact=True))))
    session.data_received(ws_frame(encode(FindOrCreate(config.regions[0], "bench"))))
    await asyncio.gather(*server.lobby._tasks)  # the lobby answers in a task
    assert session.player is not None, session.conn.last_error
    baseline = ClientBaseline(capacity=number)
    for snapshot_id in range(1, number + 1):
        baseline.record_sent(snapshot_id, None)
    session.player.baseline = baseline
    return session


def measure_edge(repeat: int, number: int, clock: Callable[[], float]) -> dict[str, list[float]]:
    """The edge cases; runs its own event loop (Session needs one)."""

    async def run() -> dict[str, list[float]]:
        results: dict[str, list[float]] = {}
        signer = InputSigner(KEY)
        wire = acking_ws_frames(signer, number)
        # One frame per read, and three (a busy loop finds several queued while a tick ran).
        for case, per_read in (
            ("edge InputFrame path", 1),
            ("edge InputFrame path, 3 per read", 3),
        ):
            reads = in_reads(wire, per_read)
            results[case] = []
            for _ in range(repeat):
                session = edge_session()
                receive = session.data_received
                start = clock()
                for data in reads:
                    receive(data)
                results[case].append((clock() - start) / number)
                assert session.conn.stats.inputs_accepted == number
        for case, per_read in (
            ("edge InputFrame path, GameServer", 1),
            ("edge InputFrame path, GameServer, 3 per read", 3),
        ):
            results[case] = []
            for _ in range(repeat):
                session = await game_server_session(number)
                signer = InputSigner(session.conn.session_key)  # type: ignore[arg-type]
                # Two reads, then the tick's take (at most 6 queued: none is dropped).
                reads = in_reads(acking_ws_frames(signer, number), per_read)
                rounds = [reads[index : index + 2] for index in range(0, len(reads), 2)]
                receive = session.data_received
                inputs = session.player.inputs  # type: ignore[union-attr]
                start = clock()
                for pair in rounds:
                    for data in pair:
                        receive(data)
                    inputs.clear()
                results[case].append((clock() - start) / number)
                assert session.conn.stats.inputs_accepted == number
                assert session.player.baseline.acked_id == number  # type: ignore[union-attr]
                assert session.room.ingestion.dropped == 0  # type: ignore[union-attr]
        host = BenchHost()  # one host, one envelope cache: as the game server's sessions
        clients = [edge_session(host) for _ in range(4)]
        snapshot = EncodedSnapshot(7, 1234, 6, False, bytes(100))
        rounds = max(1, number // 4)
        sends: list[float] = []
        for _ in range(repeat):
            envelopes = host.envelopes
            start = clock()
            for tick in range(rounds):
                envelopes.clear()
                for index, client in enumerate(clients):
                    client.offer_snapshot(snapshot, tick + index)
            sends.append((clock() - start) / (rounds * 4))
        results["snapshot send per client"] = sends
        parse: list[float] = []
        for _ in range(repeat):
            protocol = ServerProtocol(state=State.OPEN, max_size=65536)
            start = clock()
            for data in wire:
                protocol.receive_data(data)
                protocol.events_received()
            parse.append((clock() - start) / number)
        results["websockets parse only"] = parse
        return results

    return asyncio.run(run())


def _time_per_op(op: Callable[[], object], number: int, clock: Callable[[], float]) -> float:
    start = clock()
    for _ in range(number):
        op()
    return (clock() - start) / number


def measure(
    repeat: int, number: int, clock: Callable[[], float] = time.process_time
) -> dict[str, dict[str, float]]:
    results: dict[str, list[float]] = {}
    simple = {
        "InputFrame encode+decode": op_input_codec(),
        "Snapshot 1 KiB encode+decode": op_snapshot_codec(),
        "sign+verify": op_sign_verify(),
    }
    for name, op in simple.items():
        results[name] = [_time_per_op(op, number, clock) for _ in range(repeat)]
    frames = signed_frames(number)
    path: list[float] = []
    for _ in range(repeat):
        conn = session_in_room()  # fresh replay guard each repetition
        start = clock()
        run_server_path(conn, frames)
        path.append((clock() - start) / number)
        assert conn.stats.inputs_accepted == number, "frames were rejected"
    results["server InputFrame path"] = path
    results.update(measure_edge(repeat, number, clock))
    return {
        name: {"median_us": statistics.median(times) * 1e6, "min_us": min(times) * 1e6}
        for name, times in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: this process's CPU time (a shared machine's scheduling does not count); "
        "wall: perf_counter",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    results = measure(args.repeat, args.number, clock)
    if args.json:
        print(
            json.dumps(
                {
                    "repeat": args.repeat,
                    "number": args.number,
                    "clock": args.clock,
                    "results": results,
                }
            )
        )
        return
    print(f"{'case':46} {'median us':>10} {'min us':>10}   ({args.repeat} x {args.number} ops)")
    for name, row in results.items():
        print(f"{name:46} {row['median_us']:10.2f} {row['min_us']:10.2f}")


if __name__ == "__main__":
    main()
