"""An agent session driven by this process: identity, state machine model, progress and its log.

Everything needed to continue the session elsewhere is written to its Redis
snapshot together with each event (one transaction), so a replica that adopts
the session (:meth:`Session.restore`) continues exactly where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final

from redis.exceptions import RedisError

from statemachines import AbortReason, SessionMachine, SessionModel, State, Transition

from aura.auth import Principal
from aura.errors import LeaseLost
from aura.events import AgentEvent, EventType
from aura.feed import Notifier
from aura.ids import EventId, SessionId, new_session_id
from aura.planner import Plan
from aura.session_store import SessionStore
from aura.snapshot import plan_from_json, plan_to_json

log = logging.getLogger(__name__)

_APPEND_BACKOFF_SECONDS: Final = (0.1, 0.2, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0)


@dataclass(frozen=True, slots=True)
class SessionRequest:
    prompt: str
    context: dict[str, Any]
    agent_id: str | None = None
    authorization: str | None = None  # "Bearer <jwt>", propagated to DWP tools; never logged or emitted


@dataclass(eq=False, slots=True)
class Session:
    id: SessionId
    owner: Principal
    request: SessionRequest
    store: SessionStore
    notifier: Notifier
    model: SessionModel = field(init=False)
    created_at: float = field(default_factory=time.time)
    # progress, persisted with every event
    plan: Plan | None = None
    step_index: int = 0
    outcomes: dict[str, str | None] = field(default_factory=dict)  # step id -> tool result
    approval_deadline: float | None = None
    tool_started: str | None = None  # a step whose tool began and has not reported back
    answered_chars: int = 0
    seq: int = 0
    # local only
    frames: list[tuple[int, bytes]] = field(default_factory=list)  # persisted (seq, frame) since cache_base
    cache_base: int = 0
    next_seq: int = 1
    ended: bool = False
    detached: bool = False  # this process stopped driving the session (drain, lease lost)
    cancel_requested: bool = False
    _pending: list[tuple[EventType, dict[str, Any]]] = field(default_factory=list)
    _outbox: list[AgentEvent] = field(default_factory=list)
    _flusher: asyncio.Task[None] | None = None
    _flush_error: BaseException | None = None
    _plan_dirty: bool = False

    def __post_init__(self) -> None:
        self.model = SessionModel(listener=self._on_transition)

    @property
    def state(self) -> State:
        return self.model.current

    def set_plan(self, plan: Plan) -> None:
        self.plan = plan
        self.step_index = 0
        self._plan_dirty = True

    def record_outcome(self, step_id: str, result: str | None) -> None:
        self.outcomes[step_id] = result
        self.step_index += 1
        self._plan_dirty = True

    # -- the log -------------------------------------------------------------------------
    def emit(self, type_: EventType, data: dict[str, Any]) -> AgentEvent:
        """Queue one event for the Redis log; followers see it once it is written.

        Events queued while a write is in flight go out together in the next
        transaction (with the snapshot as it is then), so a burst of events costs
        one or two round trips, not one each. :meth:`sync` waits for them.
        """
        if self._flush_error is not None:
            raise self._flush_error
        event = AgentEvent.create(EventId(self.id, self.next_seq), type_, data)
        self.next_seq += 1
        self._outbox.append(event)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=f"aura-log-{self.id}")
        return event

    def flush_transitions(self) -> None:
        """Queue the events that state transitions produced (their callbacks cannot emit)."""
        pending, self._pending = self._pending, []
        for type_, data in pending:
            self.emit(type_, data)

    async def sync(self) -> None:
        """Wait until everything emitted so far is in Redis; raise what stopped the writes."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)
        if self._flush_error is not None:
            raise self._flush_error

    async def close(self) -> None:
        """Mark the end of the log: followers then get [DONE]."""
        await self.sync()
        await self._append([], end=True)
        self.ended = True
        self.notifier.wake(self.id)

    async def _flush(self) -> None:
        while self._outbox and self._flush_error is None:
            batch, self._outbox = self._outbox, []
            try:
                await self._append(batch)
            except BaseException as exc:  # LeaseLost, or Redis gone for too long: the run sees it
                self._flush_error = exc
                if isinstance(exc, asyncio.CancelledError):
                    raise

    async def _append(self, events: list[AgentEvent], *, end: bool = False) -> None:
        fields = self._fields(events[-1].seq if events else self.seq)
        frames = [(e.seq, e.frame.decode("ascii")) for e in events]
        for delay in (*_APPEND_BACKOFF_SECONDS, None):
            try:
                await self.store.append(self.id, frames, fields, end=end)
                break
            except LeaseLost:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                if delay is None:
                    raise
                log.warning("session %s: Redis refused an append (%s); retrying in %.1f s", self.id, exc, delay)
                await asyncio.sleep(delay)
        self._plan_dirty = False
        if events:
            self.seq = events[-1].seq
            self.frames.extend((e.seq, e.frame) for e in events)
            self.notifier.wake(self.id)

    def forget_frames(self) -> None:
        """Drop the local replay cache (while the session idles); followers then read Redis."""
        self.cache_base = self.seq
        self.frames = []

    def covers(self, seq: int) -> bool:
        return seq >= self.cache_base

    def frames_after(self, seq: int) -> list[tuple[int, bytes]]:
        return self.frames[seq - self.cache_base :]

    def _on_transition(self, change: Transition) -> None:
        data: dict[str, Any] = {
            "sessionId": self.id,
            "from": change.source.value,
            "to": change.dest.value,
            "trigger": change.trigger.value,
        }
        if change.dest is State.ABORTED and self.model.abort_reason is not None:
            data["reason"] = self.model.abort_reason.value
        self._pending.append((EventType.STATE, data))

    # -- the snapshot --------------------------------------------------------------------
    def _fields(self, seq: int) -> dict[str, str]:
        fields = {
            "state": self.model.state,
            "seq": str(seq),
            "step": str(self.step_index),
            "pendingRequestId": self.model.pending_request_id or "",
            "approvalDeadline": "" if self.approval_deadline is None else repr(self.approval_deadline),
            "toolStarted": self.tool_started or "",
            "answeredChars": str(self.answered_chars),
            "abortReason": self.model.abort_reason.value if self.model.abort_reason else "",
            "abortDetail": self.model.abort_detail or "",
            "updatedAt": repr(time.time()),
        }
        if self._plan_dirty and self.plan is not None:
            fields["plan"] = plan_to_json(self.plan)
            fields["outcomes"] = json.dumps(self.outcomes, ensure_ascii=False, separators=(",", ":"))
        return fields

    def identity_fields(self) -> dict[str, str]:
        return {
            "sessionId": self.id,
            "tenantId": self.owner.tenant_id,
            "userId": self.owner.user_id,
            "agentId": self.request.agent_id or "",
            "authorization": self.request.authorization or "",
            "prompt": self.request.prompt,
            "context": json.dumps(self.request.context, ensure_ascii=False, separators=(",", ":")),
            "createdAt": repr(self.created_at),
            **self._fields(0),
        }

    @classmethod
    def restore(cls, fields: dict[str, str], store: SessionStore, notifier: Notifier) -> Session:
        request = SessionRequest(
            prompt=fields["prompt"],
            context=json.loads(fields.get("context") or "{}"),
            agent_id=fields.get("agentId") or None,
            authorization=fields.get("authorization") or None,
        )
        owner = Principal(user_id=fields["userId"], tenant_id=fields["tenantId"])
        session = cls(SessionId(fields["sessionId"]), owner, request, store, notifier, created_at=float(fields["createdAt"]))
        if fields.get("plan"):
            session.plan = plan_from_json(fields["plan"])
            session.outcomes = json.loads(fields.get("outcomes") or "{}")
        session.step_index = int(fields.get("step") or 0)
        session.seq = session.cache_base = int(fields.get("seq") or 0)
        session.next_seq = session.seq + 1
        session.tool_started = fields.get("toolStarted") or None
        session.answered_chars = int(fields.get("answeredChars") or 0)
        deadline = fields.get("approvalDeadline")
        session.approval_deadline = float(deadline) if deadline else None
        session.model.pending_request_id = fields.get("pendingRequestId") or None
        if fields.get("abortReason"):
            session.model.abort_reason = AbortReason(fields["abortReason"])
        session.cancel_requested = fields.get("cancelRequested") == "1"
        return session


class SessionRegistry:
    """The sessions this process drives (created here or adopted)."""

    def __init__(self, machine: SessionMachine, store: SessionStore, notifier: Notifier) -> None:
        self._machine = machine
        self._store = store
        self._notifier = notifier
        self._sessions: dict[str, Session] = {}

    async def create(self, owner: Principal, request: SessionRequest) -> Session:
        session = Session(new_session_id(), owner, request, self._store, self._notifier)
        self._machine.add(session.model)
        # Local first: the adoption scan must never see it in Redis as nobody's.
        self._sessions[session.id] = session
        try:
            await self._store.create(session.id, session.identity_fields())
        except BaseException:
            self.drop(session)
            raise
        return session

    def adopt(self, fields: dict[str, str]) -> Session:
        """Drive a session restored from its snapshot; KeyError/ValueError if it is unreadable."""
        state = State(fields["state"])
        session = Session.restore(fields, self._store, self._notifier)
        self._machine.add(session.model, state)
        self._sessions[session.id] = session
        return session

    def local(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def all(self) -> list[Session]:
        return list(self._sessions.values())

    def __len__(self) -> int:
        return len(self._sessions)

    def drop(self, session: Session) -> None:
        """Stop tracking a session here (it ended, or another instance drives it now)."""
        self._machine.remove(session.model)
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
