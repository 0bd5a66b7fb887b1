"""The one place where redis-py's and the OS's errors become Aura's: :class:`StoreUnavailable`.

Every Redis call that waits on the server goes through :func:`bounded` (or
:func:`mapped` when an outer bound already exists), so a caller catches one
exception type, and the original error stays its ``__cause__``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import traceback
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, Final, TypeVar

import redis
from redis.exceptions import RedisClusterException, RedisError

from aura.errors import StoreUnavailable

T = TypeVar("T")

# What a Redis call can raise when the server is away, slow or refusing (ReadOnlyError, ...).
# RedisClusterException is not a RedisError: without it a cluster without a quorum is a 500.
REDIS_FAILURES: Final = (RedisError, RedisClusterException, OSError, TimeoutError)
_REDIS_PY: Final = str(Path(redis.__file__).parent)
# Failures mapped here, by operation, since the process started: read by aura.metrics when scraped
# (per process, like the connections they failed on).
FAILURES: Final[collections.Counter[str]] = collections.Counter()


def _redis_py_lost_its_connection(exc: BaseException) -> bool:
    """redis-py 8.1's cluster client can raise ``AttributeError: 'NoneType' object has no attribute
    'writelines'`` when a node's connection died under it: a lost connection, not a bug of ours.
    Only an AttributeError raised inside redis-py itself counts."""
    if not isinstance(exc, AttributeError) or exc.__traceback__ is None:
        return False
    innermost = traceback.extract_tb(exc.__traceback__)[-1]
    return innermost.filename.startswith(_REDIS_PY)


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
        FAILURES[operation] += 1
        raise StoreUnavailable(operation, exc) from exc
    except AttributeError as exc:
        if _redis_py_lost_its_connection(exc):
            FAILURES[operation] += 1
            raise StoreUnavailable(operation, exc) from exc
        raise


def stop_if_cancelled(task: asyncio.Task[Any] | None) -> None:
    """Raise CancelledError for a cancel of ``task`` that a Redis call swallowed.

    Python 3.11's ``asyncio.wait_for``, which redis-py wraps around every send, swallows a
    cancel that lands as the reply arrives: a loop that only stops on CancelledError would
    run on and hang the shutdown. Loops over Redis calls check this once per round.
    """
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
