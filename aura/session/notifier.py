"""Waking the followers of a session when its log grew (here, or on another replica)."""

from __future__ import annotations

import asyncio


class Notifier:
    """One asyncio.Event per session that somebody is waiting on; none otherwise."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self.draining = False

    def event(self, session_id: str) -> asyncio.Event:
        event = self._events.get(session_id)
        if event is None:
            event = self._events[session_id] = asyncio.Event()
        return event

    def wake(self, session_id: str) -> None:
        event = self._events.pop(session_id, None)
        if event is not None:
            event.set()

    def drain(self) -> None:
        """Wake every follower for good: the process is going away."""
        self.draining = True
        for event in self._events.values():
            event.set()
        self._events.clear()
