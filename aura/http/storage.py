"""Redis calls made while answering a request: bounded, and a 503 envelope when Redis is away."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from redis.exceptions import RedisError

from aura.errors import StoreUnavailable

T = TypeVar("T")


async def bounded(call: Awaitable[T], timeout: float) -> T:
    try:
        async with asyncio.timeout(timeout):
            return await call
    except (RedisError, OSError, TimeoutError) as exc:
        raise StoreUnavailable(f"Redis is unavailable: {type(exc).__name__}") from None
