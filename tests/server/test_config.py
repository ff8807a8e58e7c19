"""Tests of astranet.server.config: flags, env vars, precedence, and every validation message."""

from __future__ import annotations

import dataclasses
import re

import pytest

from astranet.errors import ConfigurationError
from astranet.server.config import (
    DEFAULT_GAME,
    ServerConfig,
    build_parser,
    load_config_or_exit,
    parse_config,
)


def test_defaults_match_wire_md() -> None:
    config = parse_config([], {})
    assert config == ServerConfig()
    assert config.host == "127.0.0.1"
    assert (config.ws_port, config.http_port) == (8788, 8789)
    assert config.regions == ("us-east", "us-west", "eu-central")
    assert config.db == "astranet.db"
    assert config.sig_failure_policy == "kick"
    assert config.tick_hz == 30
    assert config.game == DEFAULT_GAME == "astranet.examples.coop:game"
    assert config.game_modes is None
    assert config.checkpoint_interval == 1.0
    assert config.tls_cert is None and config.tls_key is None and not config.tls_enabled
    assert config.log_level == "info"
    assert config.handshake_timeout == 5.0
    assert config.resume_window == 30.0
    assert config.empty_room_grace == 10.0
    assert config.max_message_bytes == 65536


def test_config_is_frozen() -> None:
    config = parse_config([], {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.tick_hz = 60  # type: ignore[misc]


def test_every_flag_from_the_command_line(tmp_path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert")
    key.write_text("key")
    argv = [
        "--host", "0.0.0.0", "--ws-port", "0", "--http-port", "9000",
        "--regions", "eu-west,ap-south", "--db", "/tmp/x.db",
        "--sig-failure-policy", "warn", "--tick-hz", "60", "--game", "my.pkg.mod:Game.factory",
        "--game-modes", "duel,coop_4", "--checkpoint-interval", "2.5",
        "--tls-cert", str(cert), "--tls-key", str(key), "--log-level", "DEBUG",
        "--handshake-timeout", "2", "--resume-window", "0", "--empty-room-grace", "0",
        "--max-message-bytes", "4096", "--http-host", "10.0.0.5",
        "--allowed-origins", "https://Play.example.com/,http://localhost:8789",
    ]  # fmt: skip
    config = parse_config(argv, {})
    assert config == ServerConfig(
        host="0.0.0.0", ws_port=0, http_port=9000, regions=("eu-west", "ap-south"),
        db="/tmp/x.db", sig_failure_policy="warn", tick_hz=60, game="my.pkg.mod:Game.factory",
        game_modes=("duel", "coop_4"), checkpoint_interval=2.5, tls_cert=str(cert),
        tls_key=str(key), log_level="debug", handshake_timeout=2.0, resume_window=0.0,
        empty_room_grace=0.0, max_message_bytes=4096, http_host="10.0.0.5",
        allowed_origins=frozenset({"https://play.example.com", "http://localhost:8789"}),
    )  # fmt: skip
    assert config.tls_enabled
    assert config.http_bind_host == "10.0.0.5"
    assert parse_config([], {}).http_bind_host == "127.0.0.1"  # follows --host by default


ENV_CASES = [
    ("ASTRANET_HOST", "::1", "host", "::1"),
    ("ASTRANET_WS_PORT", "1234", "ws_port", 1234),
    ("ASTRANET_HTTP_PORT", "0", "http_port", 0),
    ("AW_REGION", "us-east", "regions", ("us-east",)),
    ("ASTRANET_DB", "state.db", "db", "state.db"),
    ("ASTRANET_SIG_FAILURE_POLICY", "warn", "sig_failure_policy", "warn"),
    ("ASTRANET_TICK_HZ", "20", "tick_hz", 20),
    ("ASTRANET_GAME", "astranet.examples.coop:game", "game", "astranet.examples.coop:game"),
    ("ASTRANET_GAME_MODES", "ffa", "game_modes", ("ffa",)),
    ("ASTRANET_CHECKPOINT_INTERVAL", "0.5", "checkpoint_interval", 0.5),
    ("ASTRANET_LOG_LEVEL", "warning", "log_level", "warning"),
    ("ASTRANET_HANDSHAKE_TIMEOUT", "1.5", "handshake_timeout", 1.5),
    ("ASTRANET_RESUME_WINDOW", "45", "resume_window", 45.0),
    ("ASTRANET_EMPTY_ROOM_GRACE", "3", "empty_room_grace", 3.0),
    ("ASTRANET_MAX_MESSAGE_BYTES", "131072", "max_message_bytes", 131072),
    ("ASTRANET_HTTP_HOST", "::", "http_host", "::"),
    ("ASTRANET_ALLOWED_ORIGINS", "*", "allowed_origins", None),
    ("ASTRANET_ALLOWED_ORIGINS", "https://a.b", "allowed_origins", frozenset({"https://a.b"})),
]


@pytest.mark.parametrize(("env_var", "raw", "field", "expected"), ENV_CASES)
def test_every_flag_from_its_environment_variable(
    env_var: str, raw: str, field: str, expected: object
) -> None:
    assert getattr(parse_config([], {env_var: raw}), field) == expected


def test_tls_from_environment(tmp_path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("c")
    key.write_text("k")
    config = parse_config([], {"ASTRANET_TLS_CERT": str(cert), "ASTRANET_TLS_KEY": str(key)})
    assert (config.tls_cert, config.tls_key) == (str(cert), str(key))


def test_cli_beats_env_beats_default() -> None:
    environ = {"ASTRANET_TICK_HZ": "20", "AW_REGION": "eu-central"}
    assert parse_config(["--tick-hz", "60"], environ).tick_hz == 60
    assert parse_config([], environ).tick_hz == 20
    assert parse_config([], {}).tick_hz == 30
    assert parse_config(["--regions", "us-west"], environ).regions == ("us-west",)
    assert parse_config([], environ).regions == ("eu-central",)


def test_cli_value_wins_even_when_env_value_is_bad() -> None:
    # The env var is never parsed when the flag is given, so it cannot fail the start.
    assert parse_config(["--ws-port", "1"], {"ASTRANET_WS_PORT": "nope"}).ws_port == 1


def test_empty_env_var_counts_as_unset() -> None:
    assert parse_config([], {"ASTRANET_WS_PORT": "", "AW_REGION": ""}) == ServerConfig()


BAD_FLAGS = [
    (["--sig-failure-policy", "ban"], "--sig-failure-policy: expected 'kick' or 'warn', got 'ban'"),
    (["--ws-port", "65536"], "--ws-port: expected a port 0..65535, got '65536'"),
    (["--http-port", "-1"], "--http-port: expected a port 0..65535, got '-1'"),
    (["--ws-port", "http"], "--ws-port: expected a port 0..65535, got 'http'"),
    (["--tick-hz", "0"], "--tick-hz: expected an integer 1..240, got '0'"),
    (["--tick-hz", "241"], "--tick-hz: expected an integer 1..240, got '241'"),
    (["--tick-hz", "30.5"], "--tick-hz: expected an integer 1..240, got '30.5'"),
    (["--regions", ""], "--regions: expected a comma-separated list of names"),
    (["--regions", "us-east,,eu"], "--regions: expected a comma-separated list of names"),
    (["--regions", "us east"], "--regions: expected a comma-separated list of names"),
    (["--regions", "a,a"], "without duplicates, got 'a,a'"),
    (["--game-modes", "x" * 33], "--game-modes: expected a comma-separated list of names"),
    (["--game-modes", "ok,bad!"], "--game-modes: expected a comma-separated list"),
    (["--log-level", "trace"],
     "--log-level: expected 'debug', 'info', 'warning' or 'error', got 'trace'"),
    (["--game", "astranet.examples.dots"], "--game: expected MODULE:ATTR"),
    (["--game", "1mod:game"], "--game: expected MODULE:ATTR"),
    (["--game", "mod:"], "--game: expected MODULE:ATTR"),
    (["--checkpoint-interval", "0"], "--checkpoint-interval: expected seconds > 0"),
    (["--checkpoint-interval", "nan"], "--checkpoint-interval: expected seconds > 0"),
    (["--checkpoint-interval", "inf"], "--checkpoint-interval: expected seconds > 0"),
    (["--handshake-timeout", "-1"], "--handshake-timeout: expected seconds > 0"),
    (["--resume-window", "-0.5"], "--resume-window: expected seconds >= 0"),
    (["--empty-room-grace", "5000"], "--empty-room-grace: expected seconds >= 0 and <= 3600"),
    (["--max-message-bytes", "10"], "--max-message-bytes: expected a byte count 1024..16777216"),
    (["--host", ""], "--host: expected a host name or address without spaces"),
    (["--db", " "], "--db: expected a database path"),
    (["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"],
     "--tls-cert: expected a path to an existing PEM file, got '/nonexistent/cert.pem'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--tick-hz"], "argument --tick-hz: expected one argument"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "message"), BAD_FLAGS)
def test_bad_flag_names_flag_and_accepted_values(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_config(argv, {})
    assert message in str(info.value)


def test_bad_env_value_names_flag_and_env_var() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_config([], {"ASTRANET_SIG_FAILURE_POLICY": "ban"})
    assert str(info.value) == (
        "--sig-failure-policy (from ASTRANET_SIG_FAILURE_POLICY): "
        "expected 'kick' or 'warn', got 'ban'"
    )
    with pytest.raises(ConfigurationError, match=r"--regions \(from AW_REGION\)"):
        parse_config([], {"AW_REGION": "us-east,"})


def test_tls_cert_and_key_both_or_neither(tmp_path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("c")
    with pytest.raises(ConfigurationError, match="--tls-cert/--tls-key: expected both or neither"):
        parse_config(["--tls-cert", str(cert)], {})
    with pytest.raises(ConfigurationError, match="got only --tls-key"):
        parse_config(["--tls-key", str(cert)], {})


def test_cli_wrapper_exits_2_with_message_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        load_config_or_exit(["--sig-failure-policy", "ban"], {})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "astranet-server: error: --sig-failure-policy: expected 'kick' or 'warn', got 'ban'\n"
    )
    assert "Traceback" not in err


def test_cli_wrapper_returns_config_when_valid() -> None:
    assert load_config_or_exit(["--ws-port", "0"], {}).ws_port == 0


def test_help_mentions_every_env_var(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for env_var, *_ in ENV_CASES:
        assert env_var in out
    assert "ASTRANET_TLS_CERT" in out and "ASTRANET_TLS_KEY" in out


def test_the_store_is_redis_in_cluster_mode_and_sqlite_alone() -> None:
    assert parse_config([], {}).store_kind == "sqlite"
    cluster = parse_config(["--redis", "redis://127.0.0.1:6379/0"], {})
    assert cluster.store_kind == "redis" and cluster.node_lease == 10.0
    explicit = parse_config(["--redis", "redis://127.0.0.1:6379/0", "--store", "sqlite"], {})
    assert explicit.store_kind == "sqlite"
    from_env = parse_config([], {"ASTRANET_REDIS": "redis://r:6379/1", "ASTRANET_NODE_ID": "n1"})
    assert (from_env.redis, from_env.node_id) == ("redis://r:6379/1", "n1")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--store", "redis"], "--store: 'redis' needs --redis"),
        (["--store", "disk"], "--store: expected 'sqlite' or 'redis'"),
        (["--redis", "http://x"], "--redis: expected a redis://"),
        (["--public-url", "http://x"], "--public-url: expected a ws:// or wss:// URL"),
        (["--node-lease", "30"], "--node-lease: expected seconds <= 10"),
    ],
)
def test_bad_cluster_flags_name_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        parse_config(argv, {})
