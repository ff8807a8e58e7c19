"""The headless runner: parse flags (astranet.server.config), load the game, serve until a signal.

Event loop: uvloop when it is installed (``pip install 'astranet[fast]'``), else asyncio's own;
``ASTRANET_EVENT_LOOP=asyncio`` forces asyncio's, ``=uvloop`` requires uvloop. The edge
(astranet.server.edge) is plain ``asyncio.Protocol`` code and runs on both.

Exit codes: 0 after a graceful SIGTERM/SIGINT (WIRE rule 8); 2 for a bad flag, an unloadable
game, an unusable database or an unreachable ``--redis`` (one line on stderr naming it, no
traceback); 1 if a port cannot be bound. ``--redis`` turns on cluster mode (WIRE A2,
docs/cluster.md); ``--workers N`` starts N nodes on consecutive ports
(:mod:`astranet.server.workers`).

Once booted (listening), the process freezes its heap (``freeze_boot_heap``: ``gc.freeze``), so
the garbage collector's full collections no longer walk what boot left alive: ~70,000 objects,
a 20-40 ms pause in the tick's thread each time, down to what came after boot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from astranet.errors import AstranetError, ConfigurationError, StorageError
from astranet.game import Game, load_game
from astranet.server.app import GameServer
from astranet.server.config import ServerConfig, load_config_or_exit
from astranet.server.fdlimits import raise_nofile_limit
from astranet.server.heap import retain_freed_memory
from astranet.server.matchmaking import MatchmakingBackend
from astranet.server.persistence import open_sqlite_persistence
from astranet.server.roomhost import RoomHost
from astranet.storage.lock import DatabaseLock

if TYPE_CHECKING:
    from astranet.cluster.timings import ClusterTimings

__all__ = ["cluster_backend", "cluster_timings", "freeze_boot_heap", "main", "run"]

log = logging.getLogger("astranet.server")


def default_node_id() -> str:
    from astranet.cluster.backend import default_node_id as make

    return make()


async def run(config: ServerConfig) -> None:
    """Serve ``config`` until SIGTERM or SIGINT, then shut down gracefully.

    Persistence is the SQLite file ``config.db`` (created if missing) or, with ``--store redis``
    (implied by ``--redis``), the cluster's shared Redis store with room failover; checkpointed
    every ``config.checkpoint_interval`` seconds (the flag requires > 0) and at shutdown. An
    unusable database raises :class:`StorageError` whose message starts with the file's path or
    the Redis URL (``main`` exits 2).
    """
    soft, hard = raise_nofile_limit()  # 1,024 descriptors would be ~1,000 players
    log.info("file descriptor limit %d (hard %d)", soft, hard)
    game = load_game(config.game)
    if config.redis is not None and config.node_id is None:
        # One id for the directory, the lease and the store's fence of this process.
        config = dataclasses.replace(config, node_id=default_node_id())
    location = config.redis if config.store_kind == "redis" else config.db
    assert location is not None
    backend = None
    db_lock: DatabaseLock | None = None
    try:
        if config.store_kind == "redis":
            # Cluster node on the shared store: room failover (WIRE A3, docs/cluster.md).
            from astranet.cluster.failover import open_failover_node

            # Cluster-wide matchmaking and redirects (A2) inside, failover (A3) around it.
            node = await open_failover_node(config, inner=cluster_backend(config))
            persistence, backend = node.persistence, node.backend
        else:
            # One server per database file (astranet.storage.lock); held until exit.
            db_lock = DatabaseLock(config.db).acquire()
            persistence = await open_sqlite_persistence(
                config.db, checkpoint_interval=config.checkpoint_interval
            )
    except StorageError as exc:
        if db_lock is not None:
            db_lock.release()
        raise _naming_db(location, exc) from None
    if backend is None:
        backend = cluster_backend(config)  # --redis with --store sqlite: no failover
    try:
        await _serve(config, game, persistence, backend, location)
    finally:
        if db_lock is not None:
            db_lock.release()


async def _serve(
    config: ServerConfig, game: Game, persistence: Any, backend: Any, location: str
) -> None:
    server = GameServer(config, game, persistence=persistence, backend=backend)
    try:
        await server.start()
    except BaseException as exc:
        await persistence.writer.close()  # release the file; the original error wins
        if isinstance(exc, StorageError):
            raise _naming_db(location, exc) from None
        raise
    log.info("gc: froze %d objects alive at boot", freeze_boot_heap())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("signal received; shutting down")
    finally:
        await server.shutdown()


def freeze_boot_heap() -> int:
    """Collect, then move every object alive now out of the collector's generations (gc.freeze).

    What a booted server holds (modules, the game, the server itself: ~70,000 objects) lives
    until exit; left in generation 2, each full collection walks it again, a pause of ~20-40 ms
    in the tick's thread. Frozen, a full collection walks only what came after boot. Returns
    the number of frozen objects. Call once, after boot, in the process that serves. (A frozen
    object that later dies inside a reference cycle is never reclaimed: boot leaves few.)
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def cluster_backend(config: ServerConfig) -> Callable[[RoomHost], MatchmakingBackend] | None:
    """The Redis matchmaking backend when ``--redis`` is set (cluster mode), else None."""
    if config.redis is None:
        return None
    from astranet.cluster.backend import redis_backend  # imports redis-py only when used

    return redis_backend(
        config.redis,
        node_id=config.node_id,
        public_url=config.public_url,
        namespace=config.redis_namespace,
        timings=cluster_timings(config),
    )


def cluster_timings(config: ServerConfig) -> ClusterTimings:
    """Lease arithmetic from ``--node-lease`` and ``--cluster-heartbeat``."""
    from astranet.cluster.timings import ClusterTimings

    lease = config.node_lease
    beat = config.cluster_heartbeat if config.cluster_heartbeat is not None else lease / 5
    return ClusterTimings(heartbeat_s=beat, lease_s=lease, reap_s=beat, room_ttl_s=lease * 1.5)


def _naming_db(db: str, exc: StorageError) -> StorageError:
    """One line that names the database file (storage errors usually start with it)."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if db not in message:
        message = f"{db}: {message}"
    return StorageError(f"database {message}")


EVENT_LOOPS = ("auto", "asyncio", "uvloop")


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event-loop factory for ``choice`` (default ``$ASTRANET_EVENT_LOOP`` or ``auto``).

    ``None`` means asyncio's default loop. Raises ``ConfigurationError`` for an unknown choice
    or for ``uvloop`` when it is not installed.
    """
    choice = choice or os.environ.get("ASTRANET_EVENT_LOOP") or "auto"
    if choice not in EVENT_LOOPS:
        raise ConfigurationError(
            f"ASTRANET_EVENT_LOOP: expected one of {', '.join(EVENT_LOOPS)}, got {choice!r}"
        )
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigurationError(
                "ASTRANET_EVENT_LOOP=uvloop but uvloop is not installed "
                "(pip install 'astranet[fast]')"
            ) from None
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    config = load_config_or_exit(list(argv) if argv is not None else None)
    if config.workers > 1:
        from astranet.server.workers import run_workers

        return run_workers(config, list(sys.argv[1:] if argv is None else argv))
    retain_freed_memory()  # a tick's numpy temporaries: reused, not faulted in anew
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        factory = loop_factory()
        with asyncio.Runner(loop_factory=factory) as runner:
            log.info("event loop: %s", "uvloop" if factory is not None else "asyncio")
            runner.run(run(config))
    except ConfigurationError as exc:
        print(f"astranet-server: error: {exc}", file=sys.stderr)
        return 2
    except AstranetError as exc:
        print(f"astranet-server: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"astranet-server: error: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0
