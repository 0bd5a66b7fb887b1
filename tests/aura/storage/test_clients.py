"""Connections to Redis: a fixed, small number whatever the load."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from aura.config import Settings
from aura.storage.clients import COMMAND_CONNECTIONS, connect
from tests.conftest import SECRET
from tests.support.redis_server import RedisServer, close_pubsub

pytestmark = pytest.mark.anyio


async def test_a_burst_of_commands_waits_for_the_pool_instead_of_failing(
    redis_server: RedisServer, redis: Redis
) -> None:
    """Regression: redis-py's default pool raised MaxConnectionsError past 100 commands in flight."""
    before = len(await redis.client_list())
    clients = connect(Settings(jwt_secret=SECRET, redis_url=redis_server.url))
    try:
        results = await asyncio.gather(*(clients.commands.get(f"burst:{n}") for n in range(2000)))
        assert results == [None] * 2000
        assert len(await redis.client_list()) - before <= COMMAND_CONNECTIONS
    finally:
        await clients.aclose()


async def test_embedded_backend_shares_one_server_between_commands_and_subscriber() -> None:
    clients = connect(Settings(jwt_secret=SECRET))
    try:
        pubsub = clients.subscriber.pubsub()
        await pubsub.subscribe("x")
        await pubsub.get_message(timeout=1)
        await clients.commands.publish("x", "hi")
        message = await pubsub.get_message(timeout=1)
        assert message["data"] == "hi" and clients.mode == "embedded"
        await close_pubsub(pubsub)
    finally:
        await clients.aclose()
