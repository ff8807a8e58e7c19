"""Hostile clients: the attacks of issue 16, as coroutines with a size knob.

Each attack talks to a real server over loopback like a hostile player would (raw websockets and
msgpack, raw TCP for HTTP) and returns what it saw as a dict. ``source`` binds the attacker's
sockets to another loopback address (``127.0.0.2``), so per-address bounds apply to the
attacker and not to the bystander measuring the damage (``astranet.tools.bystander``).

Used scaled down by tests/hostile/ (seconds) and at full scale by benchmarks/abuse.py.
Benchmark: benchmarks/abuse.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections import Counter
from collections.abc import Sequence
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from astranet.net.messages import (
    Ack,
    FindOrCreate,
    Hello,
    InputFrame,
    JoinRoom,
    Leave,
    Ping,
    Resume,
    encode,
)

__all__ = [
    "fd_exhaustion",
    "fuzz",
    "http_flood",
    "lobby_squat",
    "mutate",
    "open_ws",
    "pipelined_http",
    "reply_of",
    "room_amplification",
]

ATTACKER = "127.0.0.2"
OPEN_TIMEOUT_S = 5.0


async def open_ws(url: str, source: str = ATTACKER) -> ClientConnection:
    """A raw WebSocket client from ``source`` (no astranet client logic at all)."""
    return await connect(
        url,
        compression=None,
        max_size=None,
        open_timeout=OPEN_TIMEOUT_S,
        local_addr=(source, 0),
        close_timeout=0.5,
    )


async def reply_of(ws: ClientConnection, kind: str, within_s: float = 5.0) -> dict[str, Any]:
    """The next message of type ``kind`` (``t``) the server sends, skipping the others."""
    async with asyncio.timeout(within_s):
        while True:
            reply = msgpack.unpackb(await ws.recv())
            if isinstance(reply, dict) and reply.get("t") == kind:
                return reply


async def _first_reply(ws: ClientConnection, within_s: float = 2.0) -> dict[str, object] | None:
    """The first non-HelloAck map the server sends, or None (closed / timed out)."""
    try:
        async with asyncio.timeout(within_s):
            while True:
                reply = msgpack.unpackb(await ws.recv())
                if isinstance(reply, dict) and reply.get("t") != "HelloAck":
                    return reply
    except (ConnectionClosed, TimeoutError, ValueError):
        return None


async def room_amplification(
    url: str, *, seconds: float, per_s: float, source: str = ATTACKER
) -> dict[str, int]:
    """Issue 16 #1: Hello + FindOrCreate(party_size=4, a fresh game mode), then drop TCP."""
    outcome: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    index = 0

    async def one(mode: str) -> None:
        try:
            ws = await open_ws(url, source)
        except (OSError, InvalidHandshake, TimeoutError):
            outcome["connect_failed"] += 1
            return
        try:
            await ws.send(encode(Hello(1)))
            await ws.send(encode(FindOrCreate("us-east", mode, 4)))
            reply = await _first_reply(ws)
            kind = "closed" if reply is None else str(reply.get("t"))
            if kind == "ProtocolError":
                kind = str(reply.get("code"))  # type: ignore[union-attr]
            outcome[kind] += 1
        finally:
            ws.transport.abort()  # no Leave, no close frame: the seat (and holds) stay held

    tasks: set[asyncio.Task[None]] = set()
    while loop.time() < end:
        index += 1
        task = asyncio.create_task(one(f"amp{index}"))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        await asyncio.sleep(1.0 / per_s)  # the attack's pacing
    await asyncio.gather(*tasks, return_exceptions=True)
    return dict(outcome)


async def lobby_squat(url: str, *, count: int, source: str = ATTACKER) -> list[ClientConnection]:
    """Issue 16 #2: ``count`` connections that say Hello and then idle (caller closes them)."""
    held: list[ClientConnection] = []

    async def one() -> None:
        try:
            ws = await open_ws(url, source)
        except (OSError, InvalidHandshake, TimeoutError):
            return
        held.append(ws)  # also those the server closes at once (1013): the caller counts them
        with contextlib.suppress(ConnectionClosed):
            await ws.send(encode(Hello(1)))

    await asyncio.gather(*(one() for _ in range(count)))
    return held


async def close_codes(sockets: Sequence[ClientConnection], within_s: float) -> Counter[int | None]:
    """Wait (bounded) for each socket to be closed by the server; count the close codes."""

    async def code(ws: ClientConnection) -> int | None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                await ws.wait_closed()
        return ws.close_code if ws.close_code is not None else None

    return Counter(await asyncio.gather(*(code(ws) for ws in sockets)))


def fd_exhaustion(
    host: str, port: int, *, count: int, source: str = ATTACKER
) -> list[socket.socket]:
    """Raw TCP connections that never speak (blocking connects; the kernel's backlog accepts
    them even when the server process cannot). The caller closes them."""
    held = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(1.0)
        try:
            sock.bind((source, 0))
            sock.connect((host, port))
        except OSError:
            sock.close()
            continue
        held.append(sock)
    return held


async def http_flood(
    host: str, port: int, *, seconds: float, connections: int, paths: Sequence[str],
    source: str = ATTACKER, pipeline: int = 16,
) -> dict[str, int]:  # fmt: skip
    """Issue 16 #3: keep-alive connections pipelining GETs as fast as answers come back."""
    statuses: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    requests = [f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for path in paths]

    async def worker(index: int) -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        except OSError:
            statuses["connect_failed"] += 1
            return
        try:
            while loop.time() < end:
                batch = b"".join(requests[(index + i) % len(requests)] for i in range(pipeline))
                writer.write(batch)
                await writer.drain()
                for _ in range(pipeline):
                    status = await _read_response(reader)
                    if status is None:
                        return
                    statuses[status] += 1
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            statuses["broken"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker(i) for i in range(connections)))
    return dict(statuses)


async def _read_response(reader: asyncio.StreamReader) -> str | None:
    """Status code of one HTTP/1.1 response (its body skipped by Content-Length)."""
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    parts = lines[0].split(" ")
    return parts[1] if len(parts) > 1 else None


async def pipelined_http(
    host: str, port: int, *, count: int, path: str = "/healthz", source: str = ATTACKER
) -> Counter[str]:
    """Issue 16 #7: ``count`` requests in one write; the status of every answer."""
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    writer.write(request * count)
    await writer.drain()
    statuses: Counter[str] = Counter()
    try:
        for _ in range(count):
            status = await _read_response(reader)
            if status is None:
                break
            statuses[status] += 1
    except (asyncio.IncompleteReadError, TimeoutError, OSError):
        statuses["missing"] += count - sum(statuses.values())
    finally:
        writer.close()
    return statuses


_SEEDS: tuple[bytes, ...] = (
    encode(Hello(1)),
    encode(Hello(1, compact=True, token="x" * 40)),
    encode(FindOrCreate("us-east", "fuzz", 2)),
    encode(JoinRoom("AbCd1234", party_token=b"\x01" * 16)),
    encode(Resume("AbCd1234", "0123456789abcdef", b"\x02" * 32)),
    encode(InputFrame(7, 123456, b"\x00\x01\x02", b"\x03" * 16, ack=4)),
    encode(Ack(9)),
    encode(Ping(1, 2)),
    encode(Leave()),
)


def mutate(rng: random.Random) -> bytes | str:
    """One hostile message: a valid one with flipped bits, cuts, splices or retyped fields."""
    data = bytearray(rng.choice(_SEEDS))
    how = rng.randrange(7)
    if how == 0:  # flip bits
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif how == 1:  # truncate
        del data[rng.randrange(1, len(data)) :]
    elif how == 2:  # splice two seeds
        other = rng.choice(_SEEDS)
        data = data[: rng.randrange(len(data))] + other[rng.randrange(len(other)) :]
    elif how == 3:  # retype one field of the map
        wire = msgpack.unpackb(bytes(data))
        key = rng.choice(list(wire))
        wire[key] = rng.choice([None, -1, 2**64 - 1, 1.5, "x" * 70, b"\xff" * 3, [1], {"a": 1}])
        data = bytearray(msgpack.packb(wire))
    elif how == 4:  # random bytes
        data = bytearray(rng.randbytes(rng.randint(0, 64)))
    elif how == 5:  # a text frame
        return data.decode("latin-1")
    else:  # an extra unknown key (must be ignored)
        wire = msgpack.unpackb(bytes(data))
        wire[f"k{rng.randrange(100)}"] = rng.randbytes(4)
        data = bytearray(msgpack.packb(wire))
    return bytes(data)


async def fuzz(
    url: str, *, messages: int, workers: int, seed: int = 16, source: str = ATTACKER
) -> dict[str, int]:
    """``messages`` mutated messages from ``workers`` concurrent connections, each one
    reconnecting (with Hello first half of the time) whenever the server closes it."""
    rng = random.Random(seed)
    budget = [messages]
    stats: Counter[str] = Counter()

    async def worker() -> None:
        while budget[0] > 0:
            try:
                ws = await open_ws(url, source)
            except (OSError, InvalidStatus, InvalidHandshake, TimeoutError):
                stats["connect_failed"] += 1
                await asyncio.sleep(0.05)  # back off: the per-peer bound may be full
                continue
            stats["connections"] += 1
            try:
                if rng.random() < 0.5:
                    await ws.send(encode(Hello(1)))
                while budget[0] > 0:
                    budget[0] -= 1  # reserved before the await, refunded if the send fails
                    try:
                        await ws.send(mutate(rng))
                    except ConnectionClosed:
                        budget[0] += 1
                        raise
                    stats["sent"] += 1
                    if stats["sent"] % 8 == 0:
                        await asyncio.sleep(0)  # let replies and closes through
            except ConnectionClosed:
                stats["closed_by_server"] += 1
            finally:
                ws.transport.abort()

    await asyncio.gather(*(worker() for _ in range(workers)))
    return dict(stats)
