"""The frames of the sessions this process drives, kept so local followers need not read Redis.

Written by the log writer after Redis acknowledged a commit, read by the feed.
A session that idles (waits for a human) drops its frames; followers then read
them from Redis, which has them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Frame = tuple[int, bytes]  # (seq, SSE frame)


@dataclass(slots=True)
class _Frames:
    base: int  # the seq just before frames[0]
    frames: list[Frame] = field(default_factory=list)
    ended: bool = False


class ReplayCache:
    def __init__(self) -> None:
        self._sessions: dict[str, _Frames] = {}

    def track(self, session_id: str, last_seq: int) -> None:
        self._sessions[session_id] = _Frames(last_seq)

    def add(self, session_id: str, frames: list[Frame]) -> None:
        entry = self._sessions.get(session_id)
        if entry is not None:
            entry.frames.extend(frames)

    def end(self, session_id: str) -> None:
        entry = self._sessions.get(session_id)
        if entry is not None:
            entry.ended = True

    def forget_frames(self, session_id: str) -> None:
        entry = self._sessions.get(session_id)
        if entry is not None and entry.frames:
            entry.base = entry.frames[-1][0]
            entry.frames = []

    def drop(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def after(self, session_id: str, seq: int) -> tuple[list[Frame], bool] | None:
        """Frames after ``seq`` and whether the log ended; None if this cache cannot answer."""
        entry = self._sessions.get(session_id)
        if entry is None or seq < entry.base:
            return None
        return entry.frames[seq - entry.base :], entry.ended
