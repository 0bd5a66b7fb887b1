"""The one mapping of Redis failures: what becomes StoreUnavailable, and what stays a bug."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError, RedisClusterException

from aura.errors import StoreUnavailable
from aura.storage.calls import bounded, mapped

pytestmark = pytest.mark.anyio


async def test_redis_cluster_exception_is_a_store_failure_not_a_crash() -> None:
    """Regression: RedisClusterException is not a RedisError, so a cluster without quorum answered 500."""
    with pytest.raises(StoreUnavailable) as raised:
        async with mapped("append"):
            raise RedisClusterException("ClusterDown")
    assert isinstance(raised.value.cause, RedisClusterException) and raised.value.operation == "append"


async def test_a_connection_that_died_under_redis_py_is_a_store_failure() -> None:
    """redis-py 8.1's cluster client can hand a command a connection whose writer is gone; it fails
    with AttributeError ('NoneType' object has no attribute 'writelines') inside redis-py."""
    dead = Connection(host="127.0.0.1", port=1)  # never connected: no writer
    with pytest.raises(StoreUnavailable) as raised:
        async with mapped("append"):
            await dead._send_packed_command([b"PING\r\n"])
    assert isinstance(raised.value.cause, AttributeError)
    assert "writelines" in str(raised.value.cause)


async def test_an_attribute_error_of_our_own_stays_a_bug() -> None:
    with pytest.raises(AttributeError):
        async with mapped("append"):
            None.missing  # type: ignore[attr-defined]  # noqa: B018


async def test_bounded_maps_a_timeout_and_keeps_it_as_the_cause() -> None:
    with pytest.raises(StoreUnavailable) as raised:
        await bounded(asyncio.sleep(1), 0.01, "read log")
    assert isinstance(raised.value.cause, TimeoutError) and str(raised.value) == "Redis is unavailable: did not answer in time"


async def test_bounded_maps_a_redis_error_by_its_type() -> None:
    async def refused() -> None:
        raise ConnectionError("gone")

    with pytest.raises(StoreUnavailable) as raised:
        await bounded(refused(), 1, "heartbeat")
    assert str(raised.value) == "Redis is unavailable: ConnectionError"
