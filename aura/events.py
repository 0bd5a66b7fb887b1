"""The events a session emits, and their wire payloads (CONTRACT §3.4-3.5).

Payloads use the nested envelope ``{"type", "version", "eventId", "timestamp", "data"}``
with every field the frontend reads inside ``data``.
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass
from typing import Any, Final

from aura.ids import EventId

PAYLOAD_VERSION: Final = "1.0"


class EventType(str, enum.Enum):
    THOUGHT = "thought"
    PLAN_STEP = "plan_step"
    PLAN_STEP_UPDATE = "plan_step_update"
    TOOL_EXECUTION = "tool_execution"
    HITL = "hitl"
    HITL_REQUEST = "hitl_request"  # duplicate of `hitl` for the FE AI-workspace page (CONTRACT §3.5)
    CONTENT = "content"
    ERROR = "error"
    STATE = "state"  # Aura's extra: one per state-machine transition; clients may ignore it
    SNAPSHOT = "snapshot"  # Aura's extra: the session's state, when a cursor fell out of the bounded log


@dataclass(frozen=True, slots=True)
class AgentEvent:
    """One event of a session's log; ``frame`` is its SSE encoding, made once."""

    event_id: EventId
    type: EventType
    data: dict[str, Any]
    timestamp: int
    frame: bytes

    @property
    def seq(self) -> int:
        return self.event_id.seq

    @classmethod
    def create(cls, event_id: EventId, type_: EventType, data: dict[str, Any]) -> AgentEvent:
        now = int(time.time())
        payload = {
            "type": type_.value,
            "version": PAYLOAD_VERSION,
            "eventId": str(event_id),
            "timestamp": now,
            "data": data,
        }
        return cls(event_id, type_, data, now, encode_frame(str(event_id), type_.value, payload))


def encode_frame(event_id: str, event_type: str, payload: dict[str, Any]) -> bytes:
    """CONTRACT §3.3: ``id``/``event``/``data`` lines, compact one-line ASCII JSON, blank line.

    ASCII-only because the gateway decodes each network buffer on its own and would
    corrupt a multi-byte character split across two buffers (CONTRACT §3.6).
    """
    data = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
    return f"id: {event_id}\nevent: {event_type}\ndata: {data}\n\n".encode("ascii")


def snapshot_frame(session_id: str, seq: int, view: dict[str, Any]) -> bytes:
    """A `snapshot` event standing in for events no longer in the log; its id resumes after them."""
    event_id = f"{session_id}.{seq}"
    payload = {
        "type": EventType.SNAPSHOT.value,
        "version": PAYLOAD_VERSION,
        "eventId": event_id,
        "timestamp": int(time.time()),
        "data": view,
    }
    return encode_frame(event_id, EventType.SNAPSHOT.value, payload)
