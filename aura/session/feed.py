"""Following a session's event log: the replay cache for sessions driven here, Redis for the rest.

Events become visible only after Redis has them (the log writer fills the
replay cache after each commit), so a follower sees the same sequence on every
replica. The :class:`Notifier` wakes followers when a log grows: after a local
commit, or on a notification from the replica that drives the session, which
publishes only while some replica has said it follows (:meth:`SessionStore.follow`),
on a channel this process subscribes to only while it follows (:class:`Subscriptions`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from aura import errors
from aura.errors import StoreUnavailable
from aura.session import events
from aura.session.endings import Ending, explain
from aura.session.language import Language
from aura.session.notifier import Notifier
from aura.session.replay import Frame, ReplayCache
from aura.session.snapshot import SnapshotUnreadable, public_view
from aura.session.store import SessionStore
from aura.storage.calls import bounded

log = logging.getLogger(__name__)


class Subscriptions(Protocol):
    """Hearing a remote log grow (:class:`aura.hitl.hub.SignalHub` in production)."""

    async def follow(self, session_id: str) -> None: ...

    def unfollow(self, session_id: str) -> None: ...


class SessionFeed:
    """A follower's view of one session's log, from a cursor on."""

    def __init__(
        self,
        session_id: str,
        store: SessionStore,
        notifier: Notifier,
        replay: ReplayCache,
        subscriptions: Subscriptions,
        *,
        redis_timeout_seconds: float,
        follow_seconds: float,
    ) -> None:
        self.session_id = session_id
        self._store = store
        self._notifier = notifier
        self._replay = replay
        self._subscriptions = subscriptions
        self._subscribed = False
        self._lost = False  # the session vanished from Redis: its stream has ended
        self._timeout = redis_timeout_seconds
        self._follow_seconds = follow_seconds  # how long one "I follow" lasts in Redis
        self._followed_until = 0.0
        self.closed = False

    @property
    def draining(self) -> bool:
        return self._notifier.draining

    async def read_after(self, seq: int, *, timeout: float) -> list[Frame]:
        """Frames after ``seq``; waits up to ``timeout`` for one; ``[]`` on timeout, close or drain.

        A wake-up can be spurious (a notification of an event already read):
        then it waits again, until the timeout is really over.
        """
        if self._lost:
            self.closed = True
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
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
                # A heartbeat is due; this read also catches a lost notification.
                frames = await self._read(seq)
                if not frames and not self.closed and self._replay.after(self.session_id, seq) is None:
                    return await self._end_if_gone(seq)
                return frames

    async def _read(self, seq: int) -> list[Frame]:
        local = self._replay.after(self.session_id, seq)
        if local is not None:
            frames, ended = local
            self.closed = ended and not frames
            return frames
        try:
            # Before the read: an append after it is then published to us.
            await self._announce()
            page = await bounded(self._store.read(self.session_id, seq), self._timeout, "read log")
            frames = [(n, frame.encode("ascii")) for n, frame in page.frames]
            if frames and frames[0][0] > seq + 1:
                # The cursor fell out of the bounded log: send the snapshot first, then what is left.
                frames.insert(0, await self._snapshot_frame(frames[0][0] - 1))
        except StoreUnavailable as exc:
            # Redis is away: the stream keeps its heartbeats and reads again on the next round.
            log.debug("reading %s failed: %s", self.session_id, exc)
            return []
        self.closed = page.ended and not frames
        return frames

    async def _end_if_gone(self, seq: int) -> list[Frame]:
        """A remote log that stays silent: if its session is gone from Redis, nobody will ever
        write to it again, so the stream ends with an `error` (and [DONE]) instead of idling on."""
        try:
            exists = await bounded(self._store.exists(self.session_id), self._timeout, "look for the session")
        except StoreUnavailable:
            return []  # Redis is away: the next heartbeat asks again
        if exists:
            return []
        self.closed = self._lost = True
        message = "The session is no longer in Redis (expired, or lost in a Redis failover); it cannot continue"
        # Its prompt went with it, so the explanation before the error is English (docs/EVENTS.md).
        explanation = events.content(explain(Ending.SESSION_LOST, Language.ENGLISH))
        error = events.error(errors.SESSION_LOST, message, session_id=self.session_id, reason=None)
        return [(seq + n, events.standalone_frame(f"{self.session_id}.{seq + n}", data))
                for n, data in enumerate((explanation, error), 1)]

    def close(self) -> None:
        """The stream is over: stop hearing this log grow."""
        if self._subscribed:
            self._subscribed = False
            self._subscriptions.unfollow(self.session_id)

    async def _announce(self) -> None:
        if not self._subscribed:  # subscribed before the driver is asked to publish
            self._subscribed = True
            await self._subscriptions.follow(self.session_id)
        now = asyncio.get_running_loop().time()
        if now >= self._followed_until:
            await bounded(self._store.follow(self.session_id, self._follow_seconds), self._timeout, "follow")
            self._followed_until = now + self._follow_seconds / 2

    async def _snapshot_frame(self, seq: int) -> Frame:
        try:
            snapshot = await bounded(self._store.load_snapshot(self.session_id), self._timeout, "load snapshot")
        except SnapshotUnreadable:
            snapshot = None
        view = public_view(snapshot) if snapshot is not None else {}
        return seq, events.standalone_frame(f"{self.session_id}.{seq}", events.snapshot(view))


@dataclass(frozen=True, slots=True)
class Feeds:
    """Makes the feed of any session, local or not."""

    store: SessionStore
    notifier: Notifier
    replay: ReplayCache
    subscriptions: Subscriptions
    redis_timeout_seconds: float
    follow_seconds: float

    def __call__(self, session_id: str) -> SessionFeed:
        return SessionFeed(
            session_id,
            self.store,
            self.notifier,
            self.replay,
            self.subscriptions,
            redis_timeout_seconds=self.redis_timeout_seconds,
            follow_seconds=self.follow_seconds,
        )
