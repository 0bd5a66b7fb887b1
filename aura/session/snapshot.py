"""A session's snapshot: the typed :class:`Snapshot` and its one codec to the Redis hash.

The hash holds strings only; this module is the only place that knows its
field names. It is written with every event (the progress fields, and the plan
when it changed), so a replica that adopts the session continues exactly where
the previous driver stopped.

It never holds a credential: what the session may do as its user is a
:class:`aura.auth.Delegation` (claims, no token). When the session ends, what
only a live run reads goes (:func:`encode_finished`): the delegation, the
request's context, the LLM conversation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from statemachines import AbortReason, State

from aura.auth import Delegation, Grant, StoredToken
from aura.session.plan import Plan, PlanStep
from aura.telemetry.tracing import TraceContext

Fields = dict[str, str]
T = TypeVar("T")


class F:
    """The hash's field names (and so the keys of the public view)."""

    SESSION_ID: Final = "sessionId"
    TENANT_ID: Final = "tenantId"
    USER_ID: Final = "userId"
    AGENT_ID: Final = "agentId"
    DELEGATION: Final = "delegation"  # never shown to clients; claims, not a token
    PROMPT: Final = "prompt"
    CONTEXT: Final = "context"
    CREATED_AT: Final = "createdAt"
    STATE: Final = "state"
    SEQ: Final = "seq"
    STEP: Final = "step"
    PENDING_REQUEST_ID: Final = "pendingRequestId"
    APPROVAL_DEADLINE: Final = "approvalDeadline"
    TOOL_STARTED: Final = "toolStarted"
    ANSWERED_CHARS: Final = "answeredChars"
    ABORT_REASON: Final = "abortReason"
    ABORT_DETAIL: Final = "abortDetail"
    UPDATED_AT: Final = "updatedAt"
    PLAN: Final = "plan"
    OUTCOMES: Final = "outcomes"
    CANCEL_REQUESTED: Final = "cancelRequested"  # written by whoever asks for the cancel


# Written by versions before delegations: the caller's "Bearer <jwt>". Read (a session such a version
# created may be adopted by this one), never written, and deleted when the session ends.
LEGACY_AUTHORIZATION: Final = "authorization"
# The creating request's W3C trace context, which a run that adopts the session links to (DECISIONS
# #63); not shown to clients. Written only when tracing is on and the request carried one.
TRACE_CONTEXT: Final = "traceContext"
# What only a live run reads: deleted from the hash when the session ends.
LIVE_ONLY: Final = (F.DELEGATION, LEGACY_AUTHORIZATION, F.CONTEXT, TRACE_CONTEXT)


class SnapshotUnreadable(ValueError):
    """A stored snapshot that cannot be a session's (a field missing or malformed)."""

    def __init__(self, session_id: str, problem: str) -> None:
        super().__init__(f"snapshot of {session_id or '?'} is unreadable: {problem}")
        self.session_id = session_id


@dataclass(slots=True)
class Snapshot:
    session_id: str
    tenant_id: str
    user_id: str
    prompt: str
    context: dict[str, Any] = field(default_factory=dict)
    agent_id: str | None = None
    delegation: Grant | None = None
    trace_context: TraceContext | None = None
    created_at: float = 0.0
    state: State = State.PLANNING
    seq: int = 0
    step: int = 0
    pending_request_id: str | None = None
    approval_deadline: float | None = None
    tool_started: str | None = None
    answered_chars: int = 0
    abort_reason: AbortReason | None = None
    abort_detail: str | None = None
    updated_at: float | None = None
    plan: Plan | None = None
    outcomes: dict[str, str | None] = field(default_factory=dict)
    cancel_requested: bool = False

    @property
    def is_final(self) -> bool:
        return self.state in (State.DONE, State.ABORTED)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# -- encoding ----------------------------------------------------------------------------------
def encode_identity(snapshot: Snapshot) -> Fields:
    """Who and what: written once, when the session is created."""
    fields = {
        F.SESSION_ID: snapshot.session_id,
        F.TENANT_ID: snapshot.tenant_id,
        F.USER_ID: snapshot.user_id,
        F.AGENT_ID: snapshot.agent_id or "",
        F.PROMPT: snapshot.prompt,
        F.CONTEXT: _json(snapshot.context),
        F.CREATED_AT: repr(snapshot.created_at),
    }
    if isinstance(snapshot.delegation, Delegation):  # a StoredToken is a token: it is never written
        fields[F.DELEGATION] = snapshot.delegation.encode()
    if snapshot.trace_context is not None:
        fields[TRACE_CONTEXT] = snapshot.trace_context.encode()
    return fields


def encode_progress(snapshot: Snapshot, *, with_plan: bool) -> Fields:
    """Where the session is: written with every event; the plan only when it changed."""
    fields = {
        F.STATE: snapshot.state.value,
        F.SEQ: str(snapshot.seq),
        F.STEP: str(snapshot.step),
        F.PENDING_REQUEST_ID: snapshot.pending_request_id or "",
        F.APPROVAL_DEADLINE: "" if snapshot.approval_deadline is None else repr(snapshot.approval_deadline),
        F.TOOL_STARTED: snapshot.tool_started or "",
        F.ANSWERED_CHARS: str(snapshot.answered_chars),
        F.ABORT_REASON: snapshot.abort_reason.value if snapshot.abort_reason else "",
        F.ABORT_DETAIL: snapshot.abort_detail or "",
        F.UPDATED_AT: repr(time.time() if snapshot.updated_at is None else snapshot.updated_at),
    }
    if with_plan and snapshot.plan is not None:
        fields[F.PLAN] = encode_plan(snapshot.plan)
        fields[F.OUTCOMES] = _json(snapshot.outcomes)
    return fields


def encode_finished(snapshot: Snapshot) -> tuple[Fields, list[str]]:
    """The last write of a session that ended: the fields to set, and the fields to delete.

    Kept: what the public view and a replay need. Deleted: :data:`LIVE_ONLY` (the view then shows
    ``context`` as ``{}``); the plan is written again without its conversation.
    """
    fields = encode_progress(snapshot, with_plan=False)
    if snapshot.plan is not None:
        fields[F.PLAN] = encode_plan(snapshot.plan, with_conversation=False)
        fields[F.OUTCOMES] = _json(snapshot.outcomes)
    return fields, list(LIVE_ONLY)


def encode_plan(plan: Plan, *, with_conversation: bool = True) -> str:
    return _json(
        {
            "thought": plan.thought,
            **({"conversation": plan.conversation} if with_conversation else {}),
            "steps": [
                {
                    "id": s.id,
                    "title": s.title,
                    "description": s.description,
                    "tool": s.tool,
                    "params": s.params,
                    "confidence": s.confidence,
                    "callId": s.call_id,
                    "invalid": s.invalid,
                }
                for s in plan.steps
            ],
        }
    )


# -- decoding ----------------------------------------------------------------------------------
def decode(fields: Mapping[str, str]) -> Snapshot:
    """The snapshot a hash holds; SnapshotUnreadable names what is wrong with it."""
    session_id = fields.get(F.SESSION_ID, "")
    try:
        plan_text = fields.get(F.PLAN)
        return Snapshot(
            session_id=fields[F.SESSION_ID],
            tenant_id=fields[F.TENANT_ID],
            user_id=fields[F.USER_ID],
            prompt=fields[F.PROMPT],
            context=_field(F.CONTEXT, json.loads, fields.get(F.CONTEXT) or "{}"),
            agent_id=fields.get(F.AGENT_ID) or None,
            delegation=_grant(fields),
            trace_context=TraceContext.decode(fields.get(TRACE_CONTEXT) or ""),
            created_at=float(fields[F.CREATED_AT]),
            state=State(fields[F.STATE]),
            seq=int(fields.get(F.SEQ) or 0),
            step=int(fields.get(F.STEP) or 0),
            pending_request_id=fields.get(F.PENDING_REQUEST_ID) or None,
            approval_deadline=_float_or_none(fields.get(F.APPROVAL_DEADLINE)),
            tool_started=fields.get(F.TOOL_STARTED) or None,
            answered_chars=int(fields.get(F.ANSWERED_CHARS) or 0),
            abort_reason=AbortReason(fields[F.ABORT_REASON]) if fields.get(F.ABORT_REASON) else None,
            abort_detail=fields.get(F.ABORT_DETAIL) or None,
            updated_at=_float_or_none(fields.get(F.UPDATED_AT)),
            plan=_field(F.PLAN, decode_plan, plan_text) if plan_text else None,
            outcomes=_field(F.OUTCOMES, json.loads, fields.get(F.OUTCOMES) or "{}") if plan_text else {},
            cancel_requested=fields.get(F.CANCEL_REQUESTED) == "1",
        )
    except KeyError as exc:
        raise SnapshotUnreadable(session_id, f"field {exc.args[0]} is missing") from exc
    except (ValueError, TypeError) as exc:
        raise SnapshotUnreadable(session_id, f"{type(exc).__name__}: {exc}") from exc


def decode_plan(text: str) -> Plan:
    body = json.loads(text)
    steps = [
        PlanStep(
            id=s["id"],
            title=s["title"],
            description=s["description"],
            tool=s.get("tool"),
            params=s.get("params") or {},
            confidence=float(s.get("confidence", 0.9)),
            call_id=s.get("callId"),
            invalid=s.get("invalid"),
        )
        for s in body["steps"]
    ]
    return Plan(thought=body["thought"], steps=steps, conversation=body.get("conversation") or [])


def _field(name: str, parse: Callable[[str], T], text: str) -> T:
    """``parse(text)``, or a ValueError that names the field and the start of its value."""
    try:
        return parse(text)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"field {name} is not valid ({type(exc).__name__}): {text[:60]!r}") from exc


def _grant(fields: Mapping[str, str]) -> Grant | None:
    """The session's delegation, or the token a version before delegations stored (used only if it verifies)."""
    text = fields.get(F.DELEGATION)
    if text:
        return _field(F.DELEGATION, Delegation.decode, text)
    scheme, _, token = (fields.get(LEGACY_AUTHORIZATION) or "").partition(" ")
    return StoredToken(token.strip()) if scheme.lower() == "bearer" and token.strip() else None


def _float_or_none(text: str | None) -> float | None:
    return float(text) if text else None


# -- what clients see --------------------------------------------------------------------------
def public_view(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot as clients see it: typed values, no secrets, no chat transcript."""
    plan: dict[str, Any] | None = None
    if snapshot.plan is not None:
        plan = json.loads(encode_plan(snapshot.plan, with_conversation=False))
    return {
        F.SESSION_ID: snapshot.session_id,
        F.TENANT_ID: snapshot.tenant_id,
        F.USER_ID: snapshot.user_id,
        F.AGENT_ID: snapshot.agent_id,
        F.PROMPT: snapshot.prompt,
        F.CONTEXT: snapshot.context,
        F.CREATED_AT: snapshot.created_at,
        F.STATE: snapshot.state.value,
        F.SEQ: snapshot.seq,
        F.STEP: snapshot.step,
        F.PENDING_REQUEST_ID: snapshot.pending_request_id,
        F.APPROVAL_DEADLINE: snapshot.approval_deadline,
        F.TOOL_STARTED: snapshot.tool_started,
        F.ANSWERED_CHARS: snapshot.answered_chars,
        F.ABORT_REASON: snapshot.abort_reason.value if snapshot.abort_reason else None,
        F.ABORT_DETAIL: snapshot.abort_detail,
        F.UPDATED_AT: snapshot.updated_at,
        F.PLAN: plan,
        F.OUTCOMES: snapshot.outcomes if snapshot.plan is not None else None,
        F.CANCEL_REQUESTED: snapshot.cancel_requested,
    }
