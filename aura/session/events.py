"""The events a session emits: one builder per payload, the wire-size rules, and the SSE frame.

Payloads use the nested envelope ``{"type", "version", "eventId", "timestamp", "data"}``
with every field the frontend reads inside ``data`` (CONTRACT §3.4-3.5). The
frame of an event is encoded once, when it is made, and never again.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from statemachines import State, Transition

from aura.errors import SessionErrorKind
from aura.ids import EventId
from aura.session.plan import PlanStep

PAYLOAD_VERSION: Final = "1.0"
MAX_CONTENT_CHARS: Final = 1000  # keeps every frame a few KB (CONTRACT §3.6 point 2)
MAX_RESULT_CHARS: Final = 2000

_encode_json = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


class EventType(str, enum.Enum):
    THOUGHT = "thought"
    PLAN_STEP = "plan_step"
    PLAN_STEP_UPDATE = "plan_step_update"
    TOOL_EXECUTION = "tool_execution"
    HITL = "hitl"
    HITL_REQUEST = "hitl_request"  # duplicate of `hitl` for the FE AI-workspace page (CONTRACT §3.5)
    # The AI-workspace page's names (CONTRACT §3.5): it reads these and none of `thought`/`tool_execution`.
    THOUGHT_CHAIN = "thought_chain"  # one beside each `thought`
    ACTION_EXECUTION = "action_execution"  # one per tool call, at its end: the page makes a card per frame
    CONTENT = "content"
    ERROR = "error"
    STATE = "state"  # Aura's extra: one per state-machine transition; clients may ignore it
    SNAPSHOT = "snapshot"  # Aura's extra: the session's state, when a cursor fell out of the bounded log


Payload = dict[str, Any]
EventData = tuple[EventType, Payload]  # what a builder returns: the type and the ``data`` object


@dataclass(frozen=True, slots=True)
class AgentEvent:
    """One event of a session's log; ``frame`` is its SSE encoding, made once."""

    event_id: EventId
    type: EventType
    data: Payload
    timestamp: int
    frame: bytes

    @property
    def seq(self) -> int:
        return self.event_id.seq

    @classmethod
    def create(cls, event_id: EventId, type_: EventType, data: Payload) -> AgentEvent:
        now = int(time.time())
        text = str(event_id)
        frame = encode_frame(text, type_.value, envelope(text, type_, data, now))
        return cls(event_id, type_, data, now, frame)


def envelope(event_id: str, type_: EventType, data: Payload, timestamp: int | None = None) -> Payload:
    """The one payload envelope (CONTRACT §3.4): the dispatch key in ``type``, the fields in ``data``."""
    return {
        "type": type_.value,
        "version": PAYLOAD_VERSION,
        "eventId": event_id,
        "timestamp": int(time.time()) if timestamp is None else timestamp,
        "data": data,
    }


def encode_frame(event_id: str, event_type: str, payload: Mapping[str, Any]) -> bytes:
    """CONTRACT §3.3: ``id``/``event``/``data`` lines, compact one-line ASCII JSON, blank line.

    ASCII-only because the gateway decodes each network buffer on its own and would
    corrupt a multi-byte character split across two buffers (CONTRACT §3.6).
    """
    return f"id: {event_id}\nevent: {event_type}\ndata: {_encode_json(payload)}\n\n".encode("ascii")


def standalone_frame(event_id: str, data: EventData) -> bytes:
    """A frame that is in no log: the compat-mode auth error, the `snapshot` stand-in."""
    type_, body = data
    return encode_frame(event_id, type_.value, envelope(event_id, type_, body))


# -- wire-size rules (CONTRACT §3.6 point 2) -------------------------------------------------
def pieces(text: str) -> list[str]:
    """Long text as several events, so no frame outgrows a network buffer."""
    return [text[start : start + MAX_CONTENT_CHARS] for start in range(0, len(text), MAX_CONTENT_CHARS)]


def clip(text: str) -> str:
    return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + "..."


def fit(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, ``...`` included when it had to be cut."""
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


# -- one builder per payload (docs/EVENTS.md) -----------------------------------------------
def thought(content: str, kind: str) -> EventData:
    return EventType.THOUGHT, {"content": content, "thoughtType": kind, "timestamp": int(time.time())}


def thought_chain(content: str, kind: str) -> EventData:
    """The AI-workspace page's thought: it reads the kind from ``data.type``, not ``thoughtType``."""
    return EventType.THOUGHT_CHAIN, {"type": kind, "content": content, "timestamp": int(time.time())}


def plan_step(step: PlanStep, order: int) -> EventData:
    data: Payload = {
        "id": step.id,
        "title": step.title,
        "description": step.description,
        "order": order,
        "status": "pending",
        "confidence": step.confidence,
        "canSkip": False,
    }
    if step.tool is not None:
        data["tool"] = step.tool
    return EventType.PLAN_STEP, data


def step_status(step: PlanStep, status: str) -> EventData:
    """``plan_step_update``: executing, approved, completed, failed or skipped."""
    return EventType.PLAN_STEP_UPDATE, {"id": step.id, "status": status}


def tool_execution(step: PlanStep, status: str, *, result: str | None = None, error: str | None = None) -> EventData:
    """``tool_execution``: executing, then completed (with ``result``) or failed (with ``error``)."""
    data: Payload = {"tool": step.tool, "params": step.params, "stepId": step.id, "status": status}
    if result is not None:
        data["result"] = clip(result)
    if error is not None:
        data["error"] = clip(error)
    return EventType.TOOL_EXECUTION, data


def action_execution(step: PlanStep, status: str, *, result: str | None = None, error: str | None = None) -> EventData:
    """The AI-workspace page's tool card: sent once, when the call ended ``completed`` or ``failed``,
    because the page makes a new card of every frame and finishes it only from that same frame."""
    return EventType.ACTION_EXECUTION, tool_execution(step, status, result=result, error=error)[1]


def hitl(step: PlanStep, *, request_id: str, session_id: str, tool: str, timeout_seconds: float) -> list[EventData]:
    """``hitl`` and its ``hitl_request`` twin (CONTRACT §3.5, §4.1)."""
    message = f"Approve {tool}? {step.description}"
    data: Payload = {
        "requestId": request_id,
        "sessionId": session_id,
        "actionType": tool,
        "action": tool,
        "message": message,
        "params": step.params,
        "context": step.params,
        "requiresApproval": True,
        "confidence": step.confidence,
        "editableContent": message,
        "stepId": step.id,
        "timeoutSeconds": timeout_seconds,
    }
    return [(EventType.HITL, data), (EventType.HITL_REQUEST, {"id": request_id, **data})]


def content(piece: str, result: Payload | None = None) -> EventData:
    """A piece of the answer; the last one of a session that ran tools carries ``metadata.result``
    (CONTRACT §3.5: ``{type: text|checklist|preview|diff, title, content}``)."""
    data: Payload = {"content": piece, "format": "markdown"}
    if result is not None:
        data["metadata"] = {"result": result}
    return EventType.CONTENT, data


def error(kind: SessionErrorKind, message: str, *, session_id: str | None, reason: str | None) -> EventData:
    data: Payload = {"message": message, "error": message, "errorType": kind.error_type, "code": kind.code}
    if session_id is not None:
        data["sessionId"] = session_id
        data["reason"] = reason
    return EventType.ERROR, data


def state_change(session_id: str, change: Transition, abort_reason: str | None) -> EventData:
    data: Payload = {
        "sessionId": session_id,
        "from": change.source.value,
        "to": change.dest.value,
        "trigger": change.trigger.value,
    }
    if change.dest is State.ABORTED and abort_reason is not None:
        data["reason"] = abort_reason
    return EventType.STATE, data


def snapshot(view: Payload) -> EventData:
    return EventType.SNAPSHOT, view
