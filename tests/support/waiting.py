"""Waiting for a condition instead of sleeping and hoping: the one polling helper of the suite."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

Predicate = Callable[[], bool | Awaitable[bool]]


async def wait_until(
    predicate: Predicate,
    timeout: float = 10.0,
    message: str | Callable[[], str] = "condition",
    *,
    interval: float = 0.01,
) -> None:
    """Poll ``predicate`` (sync or async) every ``interval`` s until it is true.

    Raises AssertionError naming ``message`` (a text, or a callable giving the
    details at the time of the failure) once ``timeout`` seconds have passed.
    The predicate is always evaluated once more after the deadline, so a slow
    event loop cannot fail a condition that did become true.
    """
    deadline = time.monotonic() + timeout
    while True:
        expired = time.monotonic() >= deadline
        outcome = predicate()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if expired:
            what = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


async def cancel_and_wait(task: asyncio.Task[Any], timeout: float = 10.0) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again if a cancellation got lost.

    On Python 3.11, ``asyncio.wait_for`` swallows a cancellation that arrives just as
    the call it wraps completes (CPython gh-86296, fixed in 3.12), and redis-py wraps
    every command's send in it: one ``cancel()`` of a task that talks to Redis may
    be lost, and an ``await task`` after it would then wait for ever.
    """
    deadline = time.monotonic() + timeout
    while not task.done():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{task!r} did not end within {timeout:g} s of being cancelled")
        task.cancel()
        await asyncio.wait({task}, timeout=0.2)
    with contextlib.suppress(asyncio.CancelledError):
        await task
