"""Server configuration: the ``astranet-server`` command line and its environment variables.

Operations: ``parse_config(argv, environ)`` turns a command line plus an environment into one
frozen :class:`ServerConfig`, or raises :class:`~astranet.errors.ConfigurationError` whose
message names the flag (and the environment variable when the bad value came from there) and
the accepted values, e.g. ``--sig-failure-policy: expected 'kick' or 'warn', got 'ban'``.
``load_config_or_exit`` is the CLI wrapper: same call, but a bad value prints
``astranet-server: error: <message>`` on stderr and exits 2 (argparse's convention), no traceback.

Flags (WIRE.md "Server command line") and their environment variables:

    --host                 ASTRANET_HOST                 127.0.0.1
    --ws-port              ASTRANET_WS_PORT              8788   (0 = pick a free port)
    --http-port            ASTRANET_HTTP_PORT            8789   (0 = pick a free port)
    --regions              AW_REGION                     us-east,us-west,eu-central
    --db                   ASTRANET_DB                   astranet.db
    --sig-failure-policy   ASTRANET_SIG_FAILURE_POLICY   kick   (kick|warn)
    --tick-hz              ASTRANET_TICK_HZ              30     (1..240)
    --game                 ASTRANET_GAME                 DEFAULT_GAME (MODULE:ATTR, not imported)
    --game-modes           ASTRANET_GAME_MODES           unset = any well-formed mode
    --checkpoint-interval  ASTRANET_CHECKPOINT_INTERVAL  1.0 s
    --tls-cert/--tls-key   ASTRANET_TLS_CERT/_TLS_KEY    unset (both or neither)
    --log-level            ASTRANET_LOG_LEVEL            info   (debug|info|warning|error)
  extras:
    --handshake-timeout    ASTRANET_HANDSHAKE_TIMEOUT    5 s    time allowed before Hello
    --resume-window        ASTRANET_RESUME_WINDOW        30 s   seat+avatar hold after a drop
    --empty-room-grace     ASTRANET_EMPTY_ROOM_GRACE     10 s   an empty room lives this long
    --max-message-bytes    ASTRANET_MAX_MESSAGE_BYTES    65536  larger messages close 1009
    --http-host            ASTRANET_HTTP_HOST            = --host  bind the side port apart
    --allowed-origins      ASTRANET_ALLOWED_ORIGINS      *      browser origins (WS + CORS)
  A4 (identity and abuse; docs/server.md "Abuse bounds"):
    --auth-jwt-secret      ASTRANET_AUTH_JWT_SECRET      unset  HS256 secret (>= 32 chars)
    --auth-jwt-public-key  ASTRANET_AUTH_JWT_PUBLIC_KEY  unset  RS256/ES256 PEM (inline or path)
    --max-rooms-per-peer   ASTRANET_MAX_ROOMS_PER_PEER   120    rooms one address creates/min
    --max-connections-per-peer ASTRANET_MAX_CONNECTIONS_PER_PEER 256  open sockets per address
    --lobby-idle-timeout   ASTRANET_LOBBY_IDLE_TIMEOUT   60 s   after Hello, time to enter a room
  cluster mode (WIRE A2/A3, docs/cluster.md):
    --redis                ASTRANET_REDIS                unset  redis://HOST:PORT/DB; cluster mode
    --node-id              ASTRANET_NODE_ID              unique per process
    --public-url           ASTRANET_PUBLIC_URL           ws://--host:bound ws port
    --store                ASTRANET_STORE                redis with --redis, else sqlite
    --node-lease           ASTRANET_NODE_LEASE           10 s   a silent node is dead after it
    --redis-namespace      ASTRANET_REDIS_NAMESPACE      astranet  Redis key prefix
    --workers              ASTRANET_WORKERS              1      nodes on consecutive ports
    --cluster-heartbeat    ASTRANET_CLUSTER_HEARTBEAT    lease/5  lease renewal period

Precedence: CLI flag > environment variable > default. An environment variable set to the
empty string counts as unset (container templates often export empty values).
Limits: validation only; nothing is imported, opened or bound here except a file-exists check
on the TLS paths. Benchmark: none (runs once at start-up).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from astranet.errors import ConfigurationError
from astranet.server.origins import AllowedOrigins, parse_origins

__all__ = [
    "DEFAULT_GAME",
    "DEFAULT_REGIONS",
    "LOG_LEVELS",
    "SIG_FAILURE_POLICIES",
    "ServerConfig",
    "build_parser",
    "load_config_or_exit",
    "parse_config",
]

PROG = "astranet-server"
# WIRE.md: astranet-server alone serves something playable, the co-op example.
DEFAULT_GAME = "astranet.examples.coop:game"
DEFAULT_REGIONS: tuple[str, ...] = ("us-east", "us-west", "eu-central")
SIG_FAILURE_POLICIES: tuple[str, ...] = ("kick", "warn")
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
STORES: tuple[str, ...] = ("sqlite", "redis")
# WIRE rule 2 spells the game mode alphabet; regions share it so both are safe as labels/keys.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
GAME_PATTERN = re.compile(rf"{_DOTTED}:{_DOTTED}")
MAX_TICK_HZ = 240  # above this a Python step cannot keep its budget; 1 Hz is the useful floor
MIN_MESSAGE_BYTES = 1024  # a JoinAccepted or a small Snapshot must still fit
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # beyond this one client could pin serious memory
MAX_SECONDS = 3600.0  # an hour is far past any sane timeout; catches unit mistakes (ms for s)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Every server setting, validated. Field names match the flags with ``_`` for ``-``."""

    host: str = "127.0.0.1"
    ws_port: int = 8788
    http_port: int = 8789
    regions: tuple[str, ...] = DEFAULT_REGIONS
    db: str = "astranet.db"
    sig_failure_policy: str = "kick"
    tick_hz: int = 30
    game: str = DEFAULT_GAME
    game_modes: tuple[str, ...] | None = None  # None: any well-formed mode is served
    checkpoint_interval: float = 1.0
    tls_cert: str | None = None
    tls_key: str | None = None
    log_level: str = "info"
    handshake_timeout: float = 5.0
    resume_window: float = 30.0
    empty_room_grace: float = 10.0
    max_message_bytes: int = 65536
    http_host: str | None = None  # None: the side port binds --host too
    allowed_origins: AllowedOrigins = None  # None: any origin (astranet.server.origins)
    auth_jwt_secret: str | None = None
    auth_jwt_public_key: str | None = None
    #: Rooms one peer address may create per minute; 0 = unbounded. A LAN party behind one
    #: NAT address opens a few rooms a minute; a test suite on loopback a few dozen.
    max_rooms_per_peer: int = 120
    #: Open WebSocket connections per peer address; 0 = unbounded. A LAN party or a test suite
    #: on loopback runs dozens from one address (WIRE A4 asks for at least 64).
    max_connections_per_peer: int = 256
    #: Seconds a connection may stay in the lobby (after Hello, outside any room).
    lobby_idle_timeout: float = 60.0
    #: Cluster mode (WIRE A2): the shared Redis; None = one node alone.
    redis: str | None = None
    node_id: str | None = None  # None: unique per process (see resolved_node_id)
    public_url: str | None = None  # None: ws(s)://--host:<bound ws port>
    #: Where rooms, players and checkpoints live: "sqlite" (--db) or "redis" (--redis, shared
    #: by the cluster: room failover, A3). None: redis in cluster mode, else sqlite.
    store: str | None = None
    #: Seconds after its last heartbeat a node is declared dead (A2: at most 10).
    node_lease: float = 10.0
    redis_namespace: str = "astranet"  # key prefix; several clusters may share one Redis
    #: Processes (nodes) on consecutive ports (astranet.server.workers); > 1 needs --redis.
    #: With --workers, --public-url may contain {port} (each worker's WebSocket port).
    workers: int = 1
    #: Lease renewal period (astranet.cluster.timings); None: a fifth of --node-lease.
    cluster_heartbeat: float | None = None

    @property
    def store_kind(self) -> str:
        """The effective store: ``--store``, else redis in cluster mode, else sqlite."""
        if self.store is not None:
            return self.store
        return "redis" if self.redis is not None else "sqlite"

    @property
    def auth_enabled(self) -> bool:
        """True when Hello must carry a JWT (WIRE A4)."""
        return self.auth_jwt_secret is not None or self.auth_jwt_public_key is not None

    @property
    def http_bind_host(self) -> str:
        """The address the HTTP side port binds (``--http-host``, else ``--host``)."""
        return self.http_host if self.http_host is not None else self.host

    @property
    def tls_enabled(self) -> bool:
        """True when the WebSocket port should be served over TLS (``wss://``)."""
        return self.tls_cert is not None


# --- value parsers: raw string -> typed value, or ConfigurationError(reason without flag) ---


def _int_in(low: int, high: int, what: str = "an integer") -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip(), 10)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise ConfigurationError(f"expected {what} {low}..{high}, got {raw!r}")
        return value

    return parse


def _seconds(low: float, *, inclusive_low: bool) -> Callable[[str], float]:
    bound = f"{'>=' if inclusive_low else '>'} {low:g} and <= {MAX_SECONDS:g}"

    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            value = math.nan
        in_range = (value >= low if inclusive_low else value > low) and value <= MAX_SECONDS
        if not (math.isfinite(value) and in_range):
            raise ConfigurationError(f"expected seconds {bound}, got {raw!r}")
        return value

    return parse


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    quoted = [repr(choice) for choice in choices]
    # "'kick' or 'warn'"; "'debug', 'info', 'warning' or 'error'"
    accepted = ", ".join(quoted[:-1]) + f" or {quoted[-1]}"

    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ConfigurationError(f"expected {accepted}, got {raw!r}")
        return value

    return parse


def _name_list(raw: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in raw.split(","))
    expected = "a comma-separated list of names matching [A-Za-z0-9_-]{1,32}"
    if not names or any(not NAME_PATTERN.fullmatch(name) for name in names):
        raise ConfigurationError(f"expected {expected}, got {raw!r}")
    if len(set(names)) != len(names):
        raise ConfigurationError(f"expected {expected} without duplicates, got {raw!r}")
    return names


def _stripped(accepts: Callable[[str], object], expected: str) -> Callable[[str], str]:
    """A parser of one word: the stripped value when ``accepts`` it, else "expected ..."."""

    def parse(raw: str) -> str:
        value = raw.strip()
        if not accepts(value):
            raise ConfigurationError(f"expected {expected}, got {raw!r}")
        return value

    return parse


def _one_word(value: str) -> bool:
    return bool(value) and not any(ch.isspace() for ch in value)


def _non_empty(what: str) -> Callable[[str], str]:
    return _stripped(_one_word, f"{what} without spaces")


_game = _stripped(GAME_PATTERN.fullmatch, f"MODULE:ATTR (e.g. {DEFAULT_GAME!r})")
_name_list_item = _stripped(NAME_PATTERN.fullmatch, "a name matching [A-Za-z0-9_-]{1,32}")
_redis_url = _stripped(
    lambda value: value.startswith(("redis://", "rediss://", "unix://")) and _one_word(value),
    "a redis://HOST:PORT/DB URL",
)
_ws_url = _stripped(
    lambda value: value.startswith(("ws://", "wss://")) and _one_word(value),
    "a ws:// or wss:// URL",
)


def _file_path(what: str) -> Callable[[str], str]:
    """A file path: anything the OS accepts (spaces included: "My Games/orbs.db"), not blank."""

    def parse(raw: str) -> str:
        if not raw.strip() or "\0" in raw:
            raise ConfigurationError(f"expected {what}, got {raw!r}")
        return raw

    return parse


MIN_JWT_SECRET_CHARS = 32  # RFC 7518 3.2: an HS256 key must be at least 256 bits


def _jwt_secret(raw: str) -> str:
    if len(raw) < MIN_JWT_SECRET_CHARS:
        raise ConfigurationError(
            f"expected a secret of at least {MIN_JWT_SECRET_CHARS} characters "
            f"(RFC 7518: HS256 keys >= 256 bits), got {len(raw)}"
        )
    return raw


def _jwt_public_key(raw: str) -> str:
    from astranet.server.auth import load_public_key  # imports cryptography only when used

    load_public_key(raw)  # ConfigurationError names what is wrong
    return raw


def _existing_file(raw: str) -> str:
    if not os.path.isfile(raw):
        raise ConfigurationError(f"expected a path to an existing PEM file, got {raw!r}")
    return raw


@dataclass(frozen=True, slots=True)
class _Flag:
    field: str  # ServerConfig field
    parse: Callable[[str], Any]
    help: str
    env: str | None = None  # None: ASTRANET_<FIELD>

    @property
    def option(self) -> str:
        return "--" + self.field.replace("_", "-")

    @property
    def env_var(self) -> str:
        return self.env if self.env is not None else "ASTRANET_" + self.field.upper()


_PORT = _int_in(0, 65535, "a port")
_COUNT = _int_in(0, 1_000_000, "a count")
_HOST = _non_empty("a host name or address")
_TIMEOUT = _seconds(0.0, inclusive_low=False)  # > 0 s
_HOLD = _seconds(0.0, inclusive_low=True)  # >= 0 s
# One table drives argparse, the environment lookup and the error messages.
_FLAGS: tuple[_Flag, ...] = (
    _Flag("host", _HOST, "address to bind"),
    _Flag("ws_port", _PORT, "WebSocket port (0 = any free port)"),
    _Flag("http_port", _PORT, "HTTP side port (0 = any free port)"),
    _Flag("regions", _name_list, "comma-separated regions served", env="AW_REGION"),
    _Flag("db", _file_path("a database path"), "SQLite checkpoint database"),
    _Flag(
        "sig_failure_policy",
        _choice(SIG_FAILURE_POLICIES),
        "what a bad input signature costs: kick or warn",
    ),
    _Flag("tick_hz", _int_in(1, MAX_TICK_HZ), "simulation rate"),
    _Flag("game", _game, "game object as MODULE:ATTR"),
    _Flag("game_modes", _name_list, "comma-separated modes (default any)"),
    _Flag("checkpoint_interval", _TIMEOUT, "seconds between room checkpoints"),
    _Flag("tls_cert", _existing_file, "PEM certificate (needs --tls-key)"),
    _Flag("tls_key", _existing_file, "PEM private key (needs --tls-cert)"),
    _Flag("log_level", _choice(LOG_LEVELS), "logging threshold"),
    _Flag("handshake_timeout", _TIMEOUT, "seconds a new connection has to send Hello"),
    _Flag("resume_window", _HOLD, "seconds a dropped player's seat and avatar are held"),
    _Flag("empty_room_grace", _HOLD, "seconds an empty room lives before it is closed"),
    _Flag(
        "max_message_bytes",
        _int_in(MIN_MESSAGE_BYTES, MAX_MESSAGE_BYTES, "a byte count"),
        "largest accepted WebSocket message",
    ),
    _Flag("http_host", _HOST, "address the HTTP side port binds (default: --host)"),
    _Flag(
        "allowed_origins",
        parse_origins,
        "browser origins allowed to open the WebSocket and read the JSON endpoints ('*' = any)",
    ),
    _Flag("auth_jwt_secret", _jwt_secret, "HS256 secret: Hello needs a JWT"),
    _Flag(
        "auth_jwt_public_key",
        _jwt_public_key,
        "RS256/ES256 public key (PEM text or file): Hello needs a JWT",
    ),
    _Flag("max_rooms_per_peer", _COUNT, "rooms one address may create per minute (0 = unbounded)"),
    _Flag("max_connections_per_peer", _COUNT, "open connections per address (0 = unbounded)"),
    _Flag("lobby_idle_timeout", _TIMEOUT, "seconds a connection may wait in the lobby after Hello"),
    _Flag("redis", _redis_url, "shared Redis of a cluster (cluster mode)"),
    _Flag("node_id", _name_list_item, "this node's id in the cluster"),
    _Flag("public_url", _ws_url, "the URL clients use to reach this node"),
    _Flag("store", _choice(STORES), "rooms and checkpoints: sqlite or redis"),
    _Flag(
        "node_lease",
        _TIMEOUT,
        "seconds after its last heartbeat a node is declared dead (cluster mode)",
    ),
    _Flag("redis_namespace", _name_list_item, "Redis key prefix"),
    _Flag("workers", _int_in(1, 256, "a process count"), "nodes to start here"),
    _Flag("cluster_heartbeat", _TIMEOUT, "seconds between lease renewals (cluster mode)"),
)


class _RaisingParser(argparse.ArgumentParser):
    """argparse that raises ConfigurationError instead of exiting, so parsing is testable."""

    def error(self, message: str) -> NoReturn:
        raise ConfigurationError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser (every value a raw string; validation happens in parse_config)."""
    parser = _RaisingParser(
        prog=PROG, description="Run the astranet game server.", allow_abbrev=False
    )
    for flag in _FLAGS:
        parser.add_argument(
            flag.option,
            dest=flag.field,
            metavar=flag.field.split("_")[-1].upper(),
            default=None,
            help=f"{flag.help} [env {flag.env_var}]",
        )
    return parser


def parse_config(argv: list[str] | None, environ: Mapping[str, str]) -> ServerConfig:
    """Build a ServerConfig from ``argv`` (None = ``sys.argv[1:]``) and ``environ``.

    Raises ConfigurationError naming the flag (and env var) and the accepted values.
    """
    namespace = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    values: dict[str, Any] = {}
    for flag in _FLAGS:
        raw = getattr(namespace, flag.field)
        source = flag.option
        if raw is None and environ.get(flag.env_var):
            raw, source = environ[flag.env_var], f"{flag.option} (from {flag.env_var})"
        if raw is None:
            continue  # the dataclass default applies
        try:
            values[flag.field] = flag.parse(raw)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source}: {exc}") from None
    config = ServerConfig(**values)
    if config.auth_jwt_secret is not None and config.auth_jwt_public_key is not None:
        raise ConfigurationError(
            "--auth-jwt-secret/--auth-jwt-public-key: expected one or neither, got both"
        )
    if config.store == "redis" and config.redis is None:
        raise ConfigurationError("--store: 'redis' needs --redis redis://HOST:PORT/DB")
    if config.node_lease > 10.0:
        raise ConfigurationError(
            f"--node-lease: expected seconds <= 10 (WIRE A2), got {config.node_lease:g}"
        )
    if config.workers > 1 and config.redis is None:
        raise ConfigurationError("--workers: more than one worker needs --redis (cluster mode)")
    if config.cluster_heartbeat is not None and config.cluster_heartbeat * 2 > config.node_lease:
        raise ConfigurationError(
            "--cluster-heartbeat/--node-lease: expected a heartbeat of at most half the lease,"
            f" got {config.cluster_heartbeat:g} s and {config.node_lease:g} s"
        )
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigurationError(
            "--tls-cert/--tls-key: expected both or neither, got only "
            + ("--tls-cert" if config.tls_cert is not None else "--tls-key")
        )
    return config


def load_config_or_exit(
    argv: list[str] | None = None, environ: Mapping[str, str] | None = None
) -> ServerConfig:
    """CLI wrapper: parse_config, or print the error to stderr and exit 2 (no traceback)."""
    try:
        return parse_config(argv, os.environ if environ is None else environ)
    except ConfigurationError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
