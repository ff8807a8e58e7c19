"""Storage fixtures: every contract test runs on each backend (SQLite file, real Redis).

``backend`` is a factory: ``backend()`` opens the store (again, on the same file or Redis
database, so a test can close and reopen it); stores it opened are closed afterwards.
``redis_server`` is one real redis-server per test session (astranet.tools.redisproc, as in
tests/cluster), flushed before each test that uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from astranet.storage.base import Storage
from astranet.tools.redisproc import RedisProcess, redis_server_binary

BACKENDS = ["sqlite", "redis"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    if redis_server_binary() is None:  # make test must run these: .ci/run installs it
        pytest.fail("redis-server is not installed: apt-get install redis-server", pytrace=False)
    with RedisProcess() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> str:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Storage]]:
    opened: list[Storage] = []
    if request.param == "sqlite":
        from astranet.storage.sqlite import SQLiteStorage

        def open_store() -> Storage:
            opened.append(SQLiteStorage(tmp_path / "astranet.db"))
            return opened[-1]
    else:
        url = request.getfixturevalue("redis_url")
        from astranet.storage.redis import RedisStorage

        def open_store() -> Storage:
            opened.append(RedisStorage(url))
            return opened[-1]

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(backend: Callable[[], Storage]) -> Storage:
    return backend()
