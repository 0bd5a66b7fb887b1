"""Waking the followers of a session when its log grew (here, or on another replica)."""

from __future__ import annotations

import asyncio


class Wakeup:
    """A one-shot event shared by a session's followers: ``asyncio.Event`` without its deque.

    Thousands of streams wait at once; an Event's waiter deque costs 0.6 KiB each (issue 8).
    """

    __slots__ = ("_set", "_future", "waiting")

    def __init__(self) -> None:
        self._set = False
        self._future: asyncio.Future[None] | None = None
        self.waiting = 0  # followers blocked in wait() right now

    def set(self) -> None:
        self._set = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        if self._set:
            return
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        self.waiting += 1
        try:
            # Shielded: one follower's timeout must not cancel the wake-up the others wait on.
            await asyncio.shield(self._future)
        finally:
            self.waiting -= 1


class Notifier:
    """One wake-up per session that somebody is waiting on; none otherwise."""

    def __init__(self) -> None:
        self._wakeups: dict[str, Wakeup] = {}
        self.draining = False

    def event(self, session_id: str) -> Wakeup:
        wakeup = self._wakeups.get(session_id)
        if wakeup is None:
            wakeup = self._wakeups[session_id] = Wakeup()
        return wakeup

    def current(self, session_id: str) -> Wakeup | None:
        """The wake-up ``session_id``'s followers sleep on, if one was taken (none is made)."""
        return self._wakeups.get(session_id)

    def followers_waiting(self, session_id: str) -> int:
        """How many followers of ``session_id`` are blocked waiting for its log to grow."""
        wakeup = self._wakeups.get(session_id)
        return 0 if wakeup is None else wakeup.waiting

    def wake(self, session_id: str) -> None:
        wakeup = self._wakeups.pop(session_id, None)
        if wakeup is not None:
            wakeup.set()

    def drain(self) -> None:
        """Wake every follower for good: the process is going away."""
        self.draining = True
        for wakeup in self._wakeups.values():
            wakeup.set()
        self._wakeups.clear()
