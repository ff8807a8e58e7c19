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

    python benchmarks/client_transport.py asyncio|asyncio-timeout|asyncio-future|sansio|raw \
        [CONNS=100] [SECONDS=8]

Measured on the 2-core reference box (shared), medians of 3 alternating runs, 100 connections:
asyncio-timeout 86.6, asyncio 79.1, sansio 53.5 us per round trip.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

PORT = 18777
INPUT = bytes(60)
SNAP = bytes(100)


def server() -> None:
    async def handler(ws: ServerConnection) -> None:
        async for _ in ws:
            await ws.send(SNAP)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", PORT, compression=None, ping_interval=None):
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


async def client(kind: str, conns: int, seconds: float) -> None:
    make = {
        "asyncio": AsyncioClient,
        "asyncio-timeout": AsyncioTimeoutClient,
        "asyncio-future": AsyncioFutureClient,
        "raw": RawClient,
    }.get(kind, SansIoClient)
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
        await asyncio.sleep(max(0.0, next_t - time.monotonic()))
    cpu = time.process_time() - start_cpu
    received = sum(c.received for c in clients)
    print(
        f"{kind} conns={conns} sent={sent} received={received} "
        f"cpu_us_per_round_trip={1e6 * cpu / sent:.1f}"
    )


if __name__ == "__main__":
    kind = sys.argv[1]
    conns = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 8.0
    proc = multiprocessing.Process(target=server, daemon=True)
    proc.start()
    time.sleep(1.0)
    try:
        asyncio.run(client(kind, conns, seconds))
    finally:
        proc.terminate()
