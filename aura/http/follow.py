"""Finding a session for its owner, and following its log as an SSE response."""

from __future__ import annotations

from aura.auth import Principal
from aura.http.sse import EventStreamResponse, feed_frames
from aura.http.stream_slots import StreamSlot, StreamSlots
from aura.ids import is_session_id
from aura.metrics import Metrics
from aura.session.feed import Feeds
from aura.session.snapshot import Snapshot, SnapshotUnreadable
from aura.session.store import SessionStore
from aura.storage.calls import bounded


class SessionAccess:
    def __init__(
        self,
        store: SessionStore,
        feeds: Feeds,
        *,
        redis_timeout_seconds: float,
        heartbeat_seconds: float,
        send_timeout_seconds: float,
        slots: StreamSlots,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._slots = slots
        self._store = store
        self._feeds = feeds
        self._timeout = redis_timeout_seconds
        self._heartbeat = heartbeat_seconds
        self._send_timeout = send_timeout_seconds

    async def owned(self, session_id: str, principal: Principal) -> Snapshot | None:
        """The session's snapshot, only for its owner: anyone else learns nothing, not even that it exists.

        An id Aura cannot have issued (anything but ``sess_`` + 24 hex digits, e.g. ``sess_…:events``)
        is unknown without asking Redis: its key could hold anything (a WRONGTYPE there was a 503).
        """
        if not is_session_id(session_id):
            return None
        try:
            snapshot = await bounded(self._store.load_snapshot(session_id), self._timeout, "load snapshot")
        except SnapshotUnreadable:
            return None
        if snapshot is None or snapshot.tenant_id != principal.tenant_id or snapshot.user_id != principal.user_id:
            return None
        return snapshot

    def reserve(self, principal: Principal) -> StreamSlot:
        """A place for one more of ``principal``'s streams, or TooManyRequests: taken before any
        session is created for it, so a refused stream starts nothing."""
        return self._slots.take(principal)

    def follow(self, session_id: str, after_seq: int, slot: StreamSlot) -> EventStreamResponse:
        """The session's log as SSE; the response gives ``slot`` back when the stream ends."""
        frames = feed_frames(self._feeds(session_id), after_seq=after_seq, heartbeat_seconds=self._heartbeat)
        return EventStreamResponse(frames, send_timeout=self._send_timeout, on_close=slot.release, metrics=self._metrics)
