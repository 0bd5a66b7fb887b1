"""Shared fixtures: a real redis-server and real uvicorn servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from jose import jwt
from redis.asyncio import Redis

from aura.config import Settings
from tests.support.live_server import LiveServer
from tests.support.redis_server import RedisServer
from tests.support.sse import SseStream

SECRET = "your_shared_secret_key_must_be_at_least_256_bits_long_for_HS256"


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
    )


@pytest.fixture(scope="session")
def aura(base_settings: Settings) -> Iterator[LiveServer]:
    """The shared server with default settings; tests needing others use ``start_server``."""
    server = LiveServer(base_settings).start()
    yield server
    server.stop()


@pytest.fixture
def start_server(base_settings: Settings) -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []

    def start(**overrides: Any) -> LiveServer:
        server = LiveServer(replace(base_settings, **overrides)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def make_token(
    sub: str | int = "1", tenant: Any = "1", *, lifetime: int = 3600, secret: str = SECRET, **extra: Any
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "tenant_id": tenant, "iat": now, "exp": now + lifetime, **extra}
    if tenant is None:
        del claims["tenant_id"]
    return str(jwt.encode(claims, secret, algorithm="HS256"))


def auth_headers(sub: str = "1", tenant: str = "1", **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(sub, tenant)}", "X-Tenant-ID": tenant, **extra}


@pytest.fixture
async def client(aura: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=aura.url, timeout=30) as c:
        yield c


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
    if body is None and method == "POST":
        body = {"prompt": prompt, "context": {"activeApp": "mail"}}
    hdrs = {"Accept": "text/event-stream", **(headers if headers is not None else auth_headers())}
    async with client.stream(method, "/aura/test/stream", json=body, headers=hdrs, params=params) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        yield SseStream(response)
