"""The one place where redis-py's and the OS's errors become Aura's: :class:`StoreUnavailable`.

Every Redis call that waits on the server goes through :func:`bounded` (or
:func:`mapped` when an outer bound already exists), so a caller catches one
exception type, and the original error stays its ``__cause__``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Final, TypeVar

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


def stop_if_cancelled(task: asyncio.Task[Any] | None) -> None:
    """Raise CancelledError for a cancel of ``task`` that a Redis call swallowed.

    Python 3.11's ``asyncio.wait_for``, which redis-py wraps around every send, swallows a
    cancel that lands as the reply arrives: a loop that only stops on CancelledError would
    run on and hang the shutdown. Loops over Redis calls check this once per round.
    """
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
