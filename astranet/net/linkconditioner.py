"""Link conditioner: a loopback TCP proxy that makes the network worse, on purpose.

It sits between a WebSocket client and server and relays the raw TCP byte stream (WebSocket
framing passes through untouched), degrading each direction independently:

* latency: a fixed one-way delay per chunk;
* jitter: an extra ``uniform(0, jitter_ms)`` per chunk from a seeded RNG, so latency is a floor.
  Bytes never reorder: a chunk is delivered at ``max(previous delivery, now + latency + jitter)``;
* bandwidth: a serialisation delay ``len(chunk) / bytes_per_s`` on a link that sends one chunk at
  a time, so a burst queues behind itself;
* loss as delay: TCP cannot lose bytes, it retransmits. With probability ``loss`` a chunk is held
  an extra ``retransmit_ms`` (default ``max(200 ms, 2 x RTT)``, Linux's minimum RTO and a typical
  backed-off one) and, by the ordering rule, everything behind it waits: head-of-line blocking,
  which is what loss actually looks like to a WebSocket game;
* stalls: on demand (``stall(direction, ms)``) or scheduled (``stall_period_ms``/``stall_ms``),
  the direction delivers nothing for a while, then everything queued at once;
* outages: ``sever()`` resets every connection (SO_LINGER 0, so the peers see an RST), and
  ``block()`` additionally resets every new connection until ``unblock()``.

Design: per connection and direction one reader task and one delivery task joined by a bounded
``asyncio.Queue`` of ``(deliver_at, bytes)``; the delivery task sleeps until ``deliver_at``. No
task per chunk. Times are the event loop's monotonic clock.

Limits: ``READ_CHUNK_BYTES`` (16 KiB) per read, ``MAX_QUEUED_CHUNKS`` (64) per queue, so at most
1 MiB is held per direction per connection. When a queue is full the reader stops reading, the
kernel buffers fill and TCP flow control pushes back on the sender, as a slow link would.
Impairments apply per read chunk, not per TCP segment: a chunk is whatever one ``read()``
returned (usually one or a few WebSocket messages at game rates). ``MAX_CONNECTIONS`` (256)
concurrent connections; more are reset.
Benchmark: none; it is a test tool. docs/linkconditioner.md describes use and the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import logging
import math
import random
import signal
import socket
import struct
import sys
from dataclasses import dataclass

from astranet.errors import ConfigurationError, InvalidState

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_QUEUED_CHUNKS",
    "MIN_RETRANSMIT_MS",
    "READ_CHUNK_BYTES",
    "Direction",
    "LinkConditioner",
    "LinkProfile",
    "LinkStats",
    "main",
]

logger = logging.getLogger(__name__)

# 16 KiB reads: several game messages per read at most, and a coarse enough unit that a
# 1 MB bulk transfer is only 64 queue items.
READ_CHUNK_BYTES = 16 * 1024
# 64 x 16 KiB = 1 MiB in flight per direction per connection, then TCP backpressure.
MAX_QUEUED_CHUNKS = 64
# A test tool on loopback: a few hundred connections is already a load test.
MAX_CONNECTIONS = 256
# Linux's TCP_RTO_MIN: no retransmission happens sooner than this.
MIN_RETRANSMIT_MS = 200.0
# Connecting to the target must not hang a client forever.
CONNECT_TIMEOUT_S = 5.0

_EOF = b""  # in the queue: the sender half-closed; forward it after the data before it


class Direction(enum.Enum):
    UPSTREAM = "upstream"  # client -> server
    DOWNSTREAM = "downstream"  # server -> client


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """How one direction is degraded. The default is a perfect link."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    bandwidth_bytes_per_s: float | None = None  # None: unlimited
    loss: float = 0.0  # probability that a chunk needs a "retransmission"
    retransmit_ms: float | None = None  # None: max(MIN_RETRANSMIT_MS, 2 x RTT)
    stall_period_ms: float | None = None  # scheduled stalls: every period...
    stall_ms: float = 0.0  # ...deliver nothing for this long

    def __post_init__(self) -> None:
        _check(self.latency_ms >= 0, "latency_ms must be >= 0")
        _check(self.jitter_ms >= 0, "jitter_ms must be >= 0")
        _check(
            self.bandwidth_bytes_per_s is None or self.bandwidth_bytes_per_s > 0,
            "bandwidth_bytes_per_s must be > 0 or None",
        )
        _check(0.0 <= self.loss <= 1.0, "loss must be in [0, 1]")
        _check(self.retransmit_ms is None or self.retransmit_ms >= 0, "retransmit_ms must be >= 0")
        _check(self.stall_ms >= 0, "stall_ms must be >= 0")
        _check(
            self.stall_period_ms is None or self.stall_period_ms > self.stall_ms,
            "stall_period_ms must be > stall_ms",
        )
        finite = (self.latency_ms, self.jitter_ms, self.stall_ms)
        _check(all(math.isfinite(value) for value in finite), "values must be finite")


@dataclass(frozen=True, slots=True)
class LinkStats:
    """Counters since start. Bytes are counted when delivered."""

    connections_total: int
    connections_active: int
    connections_refused: int
    bytes_upstream: int
    bytes_downstream: int
    chunks_delayed_by_loss: int


class _DirectionState:
    """Conditioner-wide state of one direction, shared by all its connections."""

    __slots__ = ("bytes_delivered", "epoch", "forced_losses", "profile", "stall_until")

    def __init__(self, profile: LinkProfile) -> None:
        self.profile = profile
        self.forced_losses = 0  # the next N chunks are "lost" regardless of profile.loss
        self.stall_until = 0.0  # loop time before which nothing is delivered
        self.epoch = 0.0  # loop time that scheduled stall windows count from
        self.bytes_delivered = 0

    def release_time(self, deliver_at: float) -> float:
        """Earliest time >= deliver_at outside every stall (manual or scheduled)."""
        release = max(deliver_at, self.stall_until)
        period_ms = self.profile.stall_period_ms
        if period_ms is not None and self.profile.stall_ms > 0:
            phase_ms = ((release - self.epoch) * 1000.0) % period_ms
            if phase_ms < self.profile.stall_ms:
                release += (self.profile.stall_ms - phase_ms) / 1000.0
        return release


class _Pipe:
    """One direction of one proxied connection: read, schedule, deliver in order."""

    def __init__(
        self,
        link: _Link,
        direction: Direction,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        rng: random.Random,
    ) -> None:
        self.link = link
        self.direction = direction
        self.state = link.conditioner._directions[direction]
        self.reader = reader
        self.writer = writer
        self.rng = rng
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(MAX_QUEUED_CHUNKS)
        self.link_free_at = 0.0  # when the simulated wire finishes serialising
        self.last_deliver_at = 0.0  # delivery times never decrease: no reordering

    def schedule(self, now: float, size: int) -> float:
        """Delivery time of a chunk of ``size`` bytes read at ``now``."""
        profile = self.state.profile
        transmit_start = max(now, self.link_free_at)
        serialise_s = size / profile.bandwidth_bytes_per_s if profile.bandwidth_bytes_per_s else 0
        self.link_free_at = transmit_start + serialise_s
        delay_ms = profile.latency_ms
        if profile.jitter_ms > 0:
            delay_ms += self.rng.uniform(0.0, profile.jitter_ms)
        if self.state.forced_losses > 0:
            self.state.forced_losses -= 1
            lost = True
        else:
            lost = profile.loss > 0 and self.rng.random() < profile.loss
        if lost:
            delay_ms += self.link.conditioner.retransmit_ms(self.direction)
            self.link.conditioner._chunks_delayed_by_loss += 1
        deliver_at = max(self.last_deliver_at, self.link_free_at + delay_ms / 1000.0)
        self.last_deliver_at = deliver_at
        return deliver_at

    async def pump_reads(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await self.reader.read(READ_CHUNK_BYTES)
                # A full queue blocks here: we stop reading and TCP pushes back.
                await self.queue.put((self.schedule(loop.time(), len(data)), data))
                if data == _EOF:
                    return
        except OSError as exc:  # reset by the peer: the whole connection is gone
            logger.debug("%s read failed: %r", self.direction.value, exc)
            self.link.abort()

    async def _wait_for_release(self, loop: asyncio.AbstractEventLoop, deliver_at: float) -> None:
        """Sleep until ``deliver_at`` and past any stall; the deadline is a time, not an
        event, and it is re-checked after each sleep because a stall may start meanwhile."""
        while True:
            remaining_s = self.state.release_time(deliver_at) - loop.time()
            if remaining_s <= 0:
                return
            await asyncio.sleep(remaining_s)

    async def pump_deliveries(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                deliver_at, data = await self.queue.get()
                await self._wait_for_release(loop, deliver_at)
                if data == _EOF:
                    if self.writer.can_write_eof():
                        self.writer.write_eof()
                    return
                self.writer.write(data)
                self.state.bytes_delivered += len(data)
                await self.writer.drain()
        except OSError as exc:
            logger.debug("%s write failed: %r", self.direction.value, exc)
            self.link.abort()


class _Link:
    """One proxied TCP connection: a client side and a target side, two pipes."""

    def __init__(
        self,
        conditioner: LinkConditioner,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        target: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        index: int,
    ) -> None:
        self.conditioner = conditioner
        self.writers = (client[1], target[1])
        seed = conditioner.seed
        self.pipes = (
            _Pipe(
                self, Direction.UPSTREAM, client[0], target[1], random.Random(f"{seed}:{index}:up")
            ),
            _Pipe(
                self,
                Direction.DOWNSTREAM,
                target[0],
                client[1],
                random.Random(f"{seed}:{index}:down"),
            ),
        )
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        for pipe in self.pipes:
            self.tasks.append(asyncio.create_task(pipe.pump_reads()))
            self.tasks.append(asyncio.create_task(pipe.pump_deliveries()))
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for writer in self.writers:
            writer.close()

    def abort(self) -> None:
        """Reset both sides now and stop every task of this link."""
        for writer in self.writers:
            _reset(writer)
        for task in self.tasks:
            task.cancel()


class LinkConditioner:
    """A degrading TCP proxy to ``target_host:target_port`` (see the module docstring)."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        upstream: LinkProfile | None = None,
        downstream: LinkProfile | None = None,
        seed: int | str | None = None,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        # Unseeded runs still get reproducible-per-run streams derived from this.
        self.seed = seed if seed is not None else random.randrange(2**32)
        self._directions = {
            Direction.UPSTREAM: _DirectionState(upstream or LinkProfile()),
            Direction.DOWNSTREAM: _DirectionState(downstream or LinkProfile()),
        }
        self._server: asyncio.Server | None = None
        self._links: dict[_Link, asyncio.Task[None]] = {}
        self._blocked = False
        self._closing = False
        self._connections_total = 0
        self._connections_refused = 0
        self._chunks_delayed_by_loss = 0
        self.port: int | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0 picks a free port) and return the bound port."""
        if self._server is not None:
            raise InvalidState("LinkConditioner already started")
        loop_time = asyncio.get_running_loop().time()
        for state in self._directions.values():
            state.epoch = loop_time
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        """Stop listening and reset every connection."""
        self._closing = True  # handshakes still connecting to the target are refused
        if self._server is not None:
            self._server.close()
        await self.sever()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def set_profile(
        self, upstream: LinkProfile | None = None, downstream: LinkProfile | None = None
    ) -> None:
        """Replace a direction's profile; chunks read from now on use it."""
        if upstream is not None:
            self._directions[Direction.UPSTREAM].profile = upstream
        if downstream is not None:
            self._directions[Direction.DOWNSTREAM].profile = downstream

    def profile(self, direction: Direction) -> LinkProfile:
        return self._directions[direction].profile

    def retransmit_ms(self, direction: Direction) -> float:
        """The extra delay of a "lost" chunk in ``direction``."""
        configured = self._directions[direction].profile.retransmit_ms
        if configured is not None:
            return configured
        rtt_ms = sum(state.profile.latency_ms for state in self._directions.values())
        return max(MIN_RETRANSMIT_MS, 2.0 * rtt_ms)

    def stall(self, direction: Direction | str, ms: float) -> None:
        """Deliver nothing in ``direction`` for the next ``ms`` milliseconds."""
        if not (math.isfinite(ms) and ms >= 0):
            raise ConfigurationError(f"stall ms must be >= 0, got {ms!r}")
        state = self._directions[_direction(direction)]
        until = asyncio.get_running_loop().time() + ms / 1000.0
        state.stall_until = max(state.stall_until, until)

    def lose_next(self, direction: Direction | str, chunks: int = 1) -> None:
        """Treat the next ``chunks`` chunks read in ``direction`` (on any connection) as lost:
        each waits ``retransmit_ms`` and holds up everything behind it. Deterministic loss
        for tests, independent of ``LinkProfile.loss``."""
        if chunks < 0:
            raise ConfigurationError(f"chunks must be >= 0, got {chunks!r}")
        self._directions[_direction(direction)].forced_losses += chunks

    async def sever(self) -> None:
        """Reset every current connection (peers see an RST) and wait until they are gone."""
        links = list(self._links.items())
        for link, _ in links:
            link.abort()
        await asyncio.gather(*(task for _, task in links), return_exceptions=True)

    def block(self) -> None:
        """The network is down: reset current connections and every new one until unblock()."""
        self._blocked = True
        for link in list(self._links):
            link.abort()

    def unblock(self) -> None:
        self._blocked = False

    @property
    def blocked(self) -> bool:
        return self._blocked

    @property
    def stats(self) -> LinkStats:
        return LinkStats(
            connections_total=self._connections_total,
            connections_active=len(self._links),
            connections_refused=self._connections_refused,
            bytes_upstream=self._directions[Direction.UPSTREAM].bytes_delivered,
            bytes_downstream=self._directions[Direction.DOWNSTREAM].bytes_delivered,
            chunks_delayed_by_loss=self._chunks_delayed_by_loss,
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._blocked or self._closing or len(self._links) >= MAX_CONNECTIONS:
            self._connections_refused += 1
            _reset(writer)
            return
        try:
            target = await asyncio.wait_for(
                asyncio.open_connection(self.target_host, self.target_port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            logger.warning("cannot reach target %s:%s: %r", self.target_host, self.target_port, exc)
            self._connections_refused += 1
            _reset(writer)
            return
        if self._blocked or self._closing:  # went down while we were connecting
            self._connections_refused += 1
            _reset(writer)
            _reset(target[1])
            return
        self._connections_total += 1
        link = _Link(self, (reader, writer), target, self._connections_total)
        task = asyncio.current_task()
        assert task is not None
        self._links[link] = task
        try:
            await link.run()
        finally:
            del self._links[link]


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST rather than a FIN, as a dropped network would look to the peer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _direction(direction: Direction | str) -> Direction:
    try:
        return Direction(direction)
    except ValueError:
        raise ConfigurationError(
            f"direction must be 'upstream' or 'downstream', got {direction!r}"
        ) from None


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigurationError(f"LinkProfile: {message}")


# --- command line -------------------------------------------------------------------------


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="astranet-linkconditioner",
        description="Loopback TCP proxy that adds latency, jitter, bandwidth limits, "
        "loss-as-delay and stalls (the same profile in both directions).",
    )
    parser.add_argument(
        "--listen",
        type=_host_port,
        default=("127.0.0.1", 9788),
        help="HOST:PORT to listen on (port 0 picks one; default 127.0.0.1:9788)",
    )
    parser.add_argument(
        "--target",
        type=_host_port,
        default=("127.0.0.1", 8788),
        help="HOST:PORT of the server (default 127.0.0.1:8788)",
    )
    parser.add_argument(
        "--latency-ms", type=_non_negative, default=0.0, help="one-way latency per direction"
    )
    parser.add_argument(
        "--jitter-ms", type=_non_negative, default=0.0, help="extra uniform(0, J) delay per chunk"
    )
    parser.add_argument(
        "--bandwidth-kbps",
        type=_non_negative,
        default=0.0,
        help="kilobits per second per direction (0 = unlimited)",
    )
    parser.add_argument(
        "--loss",
        type=_non_negative,
        default=0.0,
        help="probability in [0, 1] that a chunk is delayed by a retransmission",
    )
    parser.add_argument(
        "--retransmit-ms",
        type=_non_negative,
        default=None,
        help="retransmission delay (default max(200, 2 x RTT))",
    )
    parser.add_argument(
        "--stall-every-ms",
        type=_non_negative,
        default=None,
        help="schedule a stall every this many ms",
    )
    parser.add_argument(
        "--stall-ms", type=_non_negative, default=0.0, help="length of each scheduled stall"
    )
    parser.add_argument("--seed", default=None, help="RNG seed for jitter and loss")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``astranet-linkconditioner``). Returns the exit status."""
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    try:
        profile = LinkProfile(
            latency_ms=args.latency_ms,
            jitter_ms=args.jitter_ms,
            bandwidth_bytes_per_s=args.bandwidth_kbps * 1000 / 8 if args.bandwidth_kbps else None,
            loss=args.loss,
            retransmit_ms=args.retransmit_ms,
            stall_period_ms=args.stall_every_ms,
            stall_ms=args.stall_ms,
        )
    except ConfigurationError as exc:
        parser.error(str(exc))  # exits 2 with the message
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args.listen, args.target, profile, args.seed))
    except OSError as exc:  # e.g. the listen port is taken: a message, not a traceback
        host, port = args.listen
        print(
            f"astranet-linkconditioner: cannot listen on {host}:{port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    return 0


async def _serve(
    listen: tuple[str, int], target: tuple[str, int], profile: LinkProfile, seed: str | None
) -> None:
    conditioner = LinkConditioner(*target, upstream=profile, downstream=profile, seed=seed)
    port = await conditioner.start(*listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
    logger.info(
        "listening %s:%d -> target %s:%d seed=%s profile=%s",
        listen[0],
        port,
        target[0],
        target[1],
        conditioner.seed,
        profile,
    )
    try:
        await stop.wait()
    finally:
        logger.info("stopping: %s", conditioner.stats)
        await conditioner.close()
