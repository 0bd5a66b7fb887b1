"""A session's event log and its live followers.

The SSE writer only calls :meth:`SessionFeed.read_after` and looks at
:attr:`SessionFeed.closed`; moving the log into a Redis Stream (XADD / XREAD
BLOCK) keeps that interface, so the writer does not change.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aura.events import AgentEvent, EventType
from aura.ids import EventId, SessionId


class SessionFeed:
    """Append-only, in-memory log; events are numbered from 1."""

    def __init__(self, session_id: SessionId) -> None:
        self.session_id = session_id
        self._events: list[AgentEvent] = []
        self._closed = False
        self._changed = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def last_seq(self) -> int:
        return len(self._events)

    def append(self, type_: EventType, data: dict[str, Any]) -> AgentEvent:
        if self._closed:
            raise RuntimeError(f"feed of {self.session_id} is closed")
        event = AgentEvent.create(EventId(self.session_id, len(self._events) + 1), type_, data)
        self._events.append(event)
        self._wake()
        return event

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._wake()

    def events_after(self, seq: int) -> list[AgentEvent]:
        return self._events[max(seq, 0) :]

    async def read_after(self, seq: int, *, timeout: float) -> list[AgentEvent]:
        """Events after ``seq``; waits up to ``timeout`` for one; ``[]`` on timeout or when closed."""
        if seq < len(self._events) or self._closed:
            return self.events_after(seq)
        changed = self._changed
        try:
            async with asyncio.timeout(timeout):
                await changed.wait()
        except TimeoutError:
            return []
        return self.events_after(seq)

    def _wake(self) -> None:
        # One Event per generation: every waiter of this generation wakes, and
        # the next readers wait on a fresh one.
        self._changed.set()
        self._changed = asyncio.Event()
