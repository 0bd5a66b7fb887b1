"""The one place where redis-py's and the OS's errors become Aura's: :class:`StoreUnavailable`.

Every Redis call that waits on the server goes through :func:`bounded` (or
:func:`mapped` when an outer bound already exists), so a caller catches one
exception type, and the original error stays its ``__cause__``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Final, TypeVar

from redis.exceptions import RedisError

from aura.errors import StoreUnavailable

T = TypeVar("T")

# What a Redis call can raise when the server is away, slow or refusing (ReadOnlyError, ...).
REDIS_FAILURES: Final = (RedisError, OSError, TimeoutError)


async def bounded(call: Awaitable[T], timeout: float, operation: str) -> T:
    """Await ``call`` for at most ``timeout`` seconds; map Redis and OS failures to StoreUnavailable."""
    async with mapped(operation):
        async with asyncio.timeout(timeout):
            return await call


@contextlib.asynccontextmanager
async def mapped(operation: str) -> AsyncIterator[None]:
    """Map Redis and OS failures inside the block to StoreUnavailable (the block bounds itself)."""
    try:
        yield
    except REDIS_FAILURES as exc:
        raise StoreUnavailable(operation, exc) from exc
