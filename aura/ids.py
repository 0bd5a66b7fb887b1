"""Identifiers: URL-path-safe, unguessable and collision-free (CONTRACT §4 item 36)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import NewType

SessionId = NewType("SessionId", str)
RequestId = NewType("RequestId", str)

_SESSION_ID_PATTERN = r"sess_[0-9a-f]{24}"  # what new_session_id() makes, and nothing else
_SESSION_ID = re.compile(_SESSION_ID_PATTERN)
_EVENT_ID = re.compile(rf"({_SESSION_ID_PATTERN})\.([0-9]{{1,12}})")
_LONG = re.compile(r"[+-]?[0-9]+")


def parse_long(text: str) -> int | None:
    """Java's ``Long.parseLong`` (tenant ids are Longs in main-service): sign, ASCII digits, 64 bits."""
    if not _LONG.fullmatch(text):  # fullmatch: "$" would accept a trailing newline
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


def is_session_id(text: str) -> bool:
    """Whether ``text`` has the form of an id Aura issues (``sess_`` + 24 lower-case hex digits).

    Checked before a caller-supplied id reaches Redis: ``sess_…:events`` must not name another key.
    """
    return _SESSION_ID.fullmatch(text) is not None  # fullmatch: "$" would accept a trailing newline


def new_session_id() -> SessionId:
    return SessionId(f"sess_{secrets.token_hex(12)}")


def new_request_id() -> RequestId:
    return RequestId(f"req_{secrets.token_hex(12)}")


@dataclass(frozen=True, slots=True)
class EventId:
    """``{sessionId}.{seq}``: globally unique, monotonic within a session (CONTRACT §3.6)."""

    session_id: SessionId
    seq: int

    def __str__(self) -> str:
        return f"{self.session_id}.{self.seq}"

    @classmethod
    def parse(cls, text: str | None) -> EventId | None:
        """Return the id Aura issued, or ``None`` for anything else (``event_123``, gateway ids)."""
        if not text:
            return None
        match = _EVENT_ID.fullmatch(text.strip())
        if match is None:
            return None
        return cls(SessionId(match.group(1)), int(match.group(2)))
