"""The fleet's join policy: a timed-out opening handshake is retried until play starts, any
other failure is final (astranet.tools.fleet)."""

from __future__ import annotations

import asyncio
import multiprocessing
from typing import Any

import pytest

from astranet.client import ConnectFailed
from astranet.errors import RoomFull
from astranet.tools import fleet
from astranet.tools.fleet import FleetConfig


class StubBot:
    """A bot whose joins fail with ``failures`` (in order), then succeed."""

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.seed = 7
        self.join_retries = 0
        self.error: str | None = None
        self.joins = 0

    async def join(self) -> str:
        self.joins += 1
        if self.failures:
            raise self.failures.pop(0)
        return "room-1"


def timed_out() -> ConnectFailed:
    try:
        raise TimeoutError("timed out during opening handshake")
    except TimeoutError as cause:
        error = ConnectFailed("ws://127.0.0.1:1", str(cause))
        error.__cause__ = cause
        return error


def refused() -> ConnectFailed:
    error = ConnectFailed("ws://127.0.0.1:1", "connection refused")
    error.__cause__ = ConnectionRefusedError(111, "refused")
    return error


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(fleet, "JOIN_RETRY_INITIAL_S", 0.001)
    monkeypatch.setattr(fleet, "JOIN_RETRY_MAX_S", 0.002)
    go = multiprocessing.get_context("spawn").Event()
    return fleet._Worker(0, FleetConfig(url="ws://127.0.0.1:1"), [0], None, go)


@pytest.mark.timeout(10)
def test_a_timed_out_handshake_is_retried_until_it_joins(worker: Any) -> None:
    bot = StubBot([timed_out(), timed_out()])
    assert asyncio.run(worker._join(bot)) == "room-1"
    assert bot.joins == 3 and bot.join_retries == 2 and bot.error is None
    assert worker.playing == [bot]


@pytest.mark.timeout(10)
def test_other_failures_are_final(worker: Any) -> None:
    for failure in (refused(), RoomFull("room is full")):
        bot = StubBot([failure])
        assert asyncio.run(worker._join(bot)) is None
        assert bot.joins == 1 and bot.join_retries == 0
        assert bot.error is not None and type(failure).__name__ in bot.error
    assert worker.playing == []


@pytest.mark.timeout(10)
def test_no_retry_once_play_started(worker: Any) -> None:
    worker.go.set()
    bot = StubBot([timed_out()])
    assert asyncio.run(worker._join(bot)) is None
    assert bot.join_retries == 0 and "timed out" in (bot.error or "")
