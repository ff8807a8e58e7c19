"""Client CPU per input + snapshot on the WebSocket layer alone: GameClient's transport shape vs
websockets' sans-I/O ``ClientProtocol``, for issue 12 (the LiteBot load generator's cost).

An echo server in another process answers every client message with one 100-byte message (a
snapshot per input); the client process sends a 60-byte message on each of CONNS connections
30 times a second from one frame task, and prints its process CPU per round trip. Variants:

* ``asyncio``: GameClient's shape -- websockets' asyncio ``Connection``, a reader task in a
  ``recv()`` loop, a writer task woken by an ``asyncio.Event`` awaiting ``send()`` per message;
* ``asyncio-timeout``: the same with an ``asyncio.timeout`` around every ``recv()`` (GameClient
  before its one-timer-per-silence-window read loop);
* ``asyncio-future``: the writer parked on a bare future instead of the Event;
* ``raw``: the floor -- a prebuilt frame per send, received bytes only counted;
* ``sansio``: websockets' public sans-I/O ``ClientProtocol`` on a bare ``asyncio.Protocol``:
  a send frames and writes at once, reads are parsed in ``data_received`` (no tasks, no
  ``send_context``, no message assembler) -- what a rewrite of GameClient's transport would buy.

    python benchmarks/client_transport.py [VARIANT ...] [--conns 100] [--seconds 8] [--json]

(no variant: all five, one after another, each against a fresh echo server on a free port).

Measured on the 2-core reference box (shared), medians of 3 alternating runs, 100 connections:
asyncio-timeout 86.6, asyncio 79.1, sansio 53.5 us per round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import time
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

VARIANTS = ("asyncio-timeout", "asyncio", "asyncio-future", "sansio", "raw")
PORT = 0  # set in the client process from the echo server's report (a free port)
INPUT = bytes(60)
SNAP = bytes(100)


def server(port_out: Any) -> None:
    async def handler(ws: ServerConnection) -> None:
        async for _ in ws:
            await ws.send(SNAP)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as srv:
            port_out.put(srv.sockets[0].getsockname()[1])
            await asyncio.Future()

    asyncio.run(main())


class AsyncioClient:
    """GameClient's structure: a reader task (recv loop), a writer task woken by an Event."""

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.outbox: list[bytes] = []
        self.received = 0

    async def start(self) -> None:
        self.ws = await connect(
            f"ws://127.0.0.1:{PORT}", compression=None, ping_interval=None, proxy=None
        )
        self.tasks = [asyncio.create_task(self.read()), asyncio.create_task(self.write())]

    def send(self, data: bytes) -> None:
        self.outbox.append(data)
        self.wake.set()

    async def read(self) -> None:
        while True:
            await self.ws.recv()
            self.received += 1

    async def write(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            out, self.outbox = self.outbox, []
            for data in out:
                await self.ws.send(data)


class AsyncioTimeoutClient(AsyncioClient):
    """As GameClient before: an asyncio.timeout around every recv."""

    async def read(self) -> None:
        while True:
            async with asyncio.timeout(3.0):
                await self.ws.recv()
            self.received += 1


class AsyncioFutureClient(AsyncioClient):
    """The writer parked on a bare future instead of an asyncio.Event."""

    def __init__(self) -> None:
        super().__init__()
        self.parked: asyncio.Future[None] | None = None

    def send(self, data: bytes) -> None:
        self.outbox.append(data)
        parked = self.parked
        if parked is not None:
            self.parked = None
            parked.set_result(None)

    async def write(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.outbox:
                self.parked = loop.create_future()
                await self.parked
            out, self.outbox = self.outbox, []
            for data in out:
                await self.ws.send(data)


class SansIoClient(asyncio.Protocol):
    """websockets' sans-I/O ClientProtocol: send writes at once, reads arrive in data_received."""

    def __init__(self) -> None:
        self.protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{PORT}"))
        self.received = 0
        self.open = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, "127.0.0.1", PORT)
        await self.open

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.protocol.send_request(self.protocol.connect())
        self.flush()

    def flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.transport.write(data)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.BINARY:
                    self.received += 1
            elif not self.open.done():
                self.open.set_result(None)  # the handshake response

    def send(self, data: bytes) -> None:
        self.protocol.send_binary(data)
        self.flush()


class RawClient(SansIoClient):
    """The floor: after the handshake, one prebuilt masked frame written per send and the
    bytes read counted (no framing work at all) -- asyncio and the socket syscalls alone."""

    FRAME = b"\x82\xbc" + bytes(4) + INPUT  # binary, masked, 60 bytes, zero mask
    SNAP_FRAME_BYTES = 2 + len(SNAP)  # the server's unmasked frame

    def __init__(self) -> None:
        super().__init__()
        self.raw_bytes = 0

    def data_received(self, data: bytes) -> None:
        if not self.open.done():
            super().data_received(data)
            return
        self.raw_bytes += len(data)
        self.received = self.raw_bytes // self.SNAP_FRAME_BYTES

    def send(self, data: bytes) -> None:
        self.transport.write(self.FRAME)  # type: ignore[attr-defined]


async def client(kind: str, conns: int, seconds: float) -> dict[str, Any]:
    make = {
        "asyncio": AsyncioClient,
        "asyncio-timeout": AsyncioTimeoutClient,
        "asyncio-future": AsyncioFutureClient,
        "raw": RawClient,
        "sansio": SansIoClient,
    }[kind]
    clients = [make() for _ in range(conns)]
    for c in clients:
        await c.start()
    period = 1 / 30
    start_cpu, start = time.process_time(), time.monotonic()
    sent = 0
    next_t = start
    while time.monotonic() - start < seconds:
        for c in clients:
            c.send(INPUT)
        sent += conns
        next_t += period
        await asyncio.sleep(max(0.0, next_t - time.monotonic()))  # the 30 Hz frame clock
    cpu = time.process_time() - start_cpu
    received = sum(c.received for c in clients)
    return {
        "variant": kind,
        "conns": conns,
        "sent": sent,
        "received": received,
        "cpu_us_per_round_trip": round(1e6 * cpu / sent, 1),
    }


def run_variant(kind: str, conns: int, seconds: float) -> dict[str, Any]:
    """One variant against a fresh echo server process (its port comes back on a queue)."""
    global PORT
    ports: Any = multiprocessing.Queue()
    proc = multiprocessing.Process(target=server, args=(ports,), daemon=True)
    proc.start()
    try:
        PORT = ports.get(timeout=30)
        return asyncio.run(client(kind, conns, seconds))
    finally:
        proc.terminate()
        proc.join(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # ([] among the choices: argparse checks the empty default of nargs="*" against them.)
    parser.add_argument("variants", nargs="*", choices=[[], *VARIANTS], default=[])
    parser.add_argument("--conns", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args(argv)
    results = []
    for kind in args.variants or VARIANTS:
        result = run_variant(kind, args.conns, args.seconds)
        results.append(result)
        print(
            f"{kind:<16} conns={result['conns']} sent={result['sent']} "
            f"received={result['received']} cpu_us_per_round_trip="
            f"{result['cpu_us_per_round_trip']}",
            file=sys.stderr if args.json else sys.stdout,
        )
    if args.json:
        print(json.dumps({"results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
