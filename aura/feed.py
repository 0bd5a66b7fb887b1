"""Following a session's event log: local fast path, Redis for everything else.

The writer is the session itself (:meth:`aura.session.Session.emit`): an event
is appended to the Redis Stream first and only then becomes visible, so every
follower, on any replica, sees the same sequence. :class:`Notifier` wakes
followers when the log grows, from a local append or a notification published
by another replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from aura.events import snapshot_frame
from aura.session_store import SessionStore
from aura.snapshot import public_view

if TYPE_CHECKING:
    from aura.session import Session

log = logging.getLogger(__name__)


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


class SessionFeed:
    """A follower's view of one session's log, from a cursor on."""

    def __init__(
        self,
        session_id: str,
        store: SessionStore,
        notifier: Notifier,
        local: Callable[[str], Session | None],
    ) -> None:
        self.session_id = session_id
        self._store = store
        self._notifier = notifier
        self._local = local
        self.closed = False

    @property
    def draining(self) -> bool:
        return self._notifier.draining

    async def read_after(self, seq: int, *, timeout: float) -> list[tuple[int, bytes]]:
        """Frames after ``seq``; waits up to ``timeout`` for one; ``[]`` on timeout, close or drain.

        A wake-up can be spurious (another replica's notification of an event
        already read): then it waits again, until the timeout is really over.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            # Take the event before reading, so a wake between the read and the wait is not lost.
            event = self._notifier.event(self.session_id)
            frames = await self._read(seq)
            if frames or self.closed or self._notifier.draining:
                return frames
            try:
                async with asyncio.timeout_at(deadline):
                    await event.wait()
            except TimeoutError:
                return await self._read(seq)  # a heartbeat is due; this read also catches a lost notification

    async def _read(self, seq: int) -> list[tuple[int, bytes]]:
        session = self._local(self.session_id)
        if session is not None and session.covers(seq):
            frames = session.frames_after(seq)
            self.closed = session.ended and not frames
            return frames
        try:
            page = await self._store.read(self.session_id, seq)
        except (RedisError, OSError, TimeoutError) as exc:
            # Redis is away: the stream keeps its heartbeats and reads again on the next round.
            log.debug("reading %s failed: %s", self.session_id, exc)
            return []
        frames = [(n, frame.encode("ascii")) for n, frame in page.frames]
        if frames and frames[0][0] > seq + 1:
            # The cursor fell out of the bounded log: send the snapshot first, then what is left.
            view = public_view(await self._store.load(self.session_id) or {})
            frames.insert(0, (frames[0][0] - 1, snapshot_frame(self.session_id, frames[0][0] - 1, view)))
        self.closed = page.ended and not frames
        return frames
