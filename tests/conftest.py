"""Shared fixtures: a real redis-server and real uvicorn servers on 127.0.0.1.

Every test that uses one of the fixtures in ``SERVER_FIXTURES`` (directly or
through another fixture) is marked ``e2e``, so ``pytest -m "not e2e"`` runs the
unit tests alone, without starting a single redis-server, uvicorn or nginx.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import respx
from redis.asyncio import Redis

from aura.config import Settings
from tests.support.auth import SECRET, auth_headers, make_token
from tests.support.live_server import LiveServer
from tests.support.redis_server import RedisServer
from tests.support.sse import SseStream

# Kept importable from here: other modules import them from tests.conftest.
__all__ = ["SECRET", "SERVER_FIXTURES", "auth_headers", "make_token", "open_stream"]

# Fixtures that start (or need) a real redis-server, uvicorn, nginx or `aura serve` process.
# Fixtures built on them (processes, listen, proxied, ...) pull them in and are covered too.
SERVER_FIXTURES = frozenset({
    "redis_server",
    "private_redis_server",
    "redis",
    "private_redis",
    "base_settings",
    "aura",
    "start_server",
    "client",
    # tests/aura/http/test_stream_via_nginx.py
    "nginx",
    "start_nginx",
    "proxied",
    # tests/aura/test_server.py
    "embedded_server",
})


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def private_redis_server() -> Iterator[RedisServer]:
    """A Redis of the module's own: sessions written there are adopted by no other test's server."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def private_redis(private_redis_server: RedisServer) -> AsyncIterator[Redis]:
    r = Redis.from_url(private_redis_server.url, decode_responses=True)
    yield r
    await r.aclose()


@pytest.fixture(scope="session")
def base_settings(redis_server: RedisServer) -> Settings:
    return Settings(
        jwt_secret=SECRET,
        redis_url=redis_server.url,
        hitl_timeout_seconds=30,
        heartbeat_seconds=15,
        lease_seconds=3,
        signal_sweep_seconds=5,
        shutdown_grace_seconds=5,
        # room for the suite's thousands of sessions of a few users; tests/aura/http/test_limits.py uses small ones
        max_live_sessions_per_user=10_000,
        max_live_sessions_per_tenant=100_000,
        max_kept_sessions_per_user=100_000,
        max_streams_per_user=10_000,
        max_streams_per_tenant=100_000,
    )


@pytest.fixture(scope="session")
def aura(base_settings: Settings) -> Iterator[LiveServer]:
    """The shared server with default settings; tests needing others use ``start_server``."""
    server = LiveServer(base_settings).start()
    yield server
    server.stop()


@pytest.fixture
def start_server(base_settings: Settings) -> Iterator[Callable[..., LiveServer]]:
    """``start_server(**overrides)``: a server of the test's own, with ``base_settings`` changed as given."""
    started: list[LiveServer] = []

    def start(**overrides: Any) -> LiveServer:
        server = LiveServer(replace(base_settings, **overrides)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
async def client(aura: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=aura.url, timeout=30) as c:
        yield c


@pytest.fixture
def mocked() -> Iterator[respx.MockRouter]:
    """respx over outbound HTTP only (the model, DWP): the servers under test on 127.0.0.1 are real."""
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        yield router


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    r = Redis.from_url(redis_server.url, decode_responses=True)
    yield r
    await r.aclose()


@contextlib.asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    prompt: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
    method: str = "POST",
    params: dict[str, str] | None = None,
) -> AsyncIterator[SseStream]:
    """The stream of a new session (or a resumed one, with Last-Event-ID): 200 asserted, SSE reader yielded."""
    if body is None and method == "POST":
        body = {"prompt": prompt, "context": {"activeApp": "mail"}}
    hdrs = {"Accept": "text/event-stream", **(headers if headers is not None else auth_headers())}
    async with client.stream(method, "/aura/test/stream", json=body, headers=hdrs, params=params) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        yield SseStream(response)
