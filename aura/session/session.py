"""One agent session: who asked what, its state-machine model, and how far it got.

The session changes its own progress; the run asks it to (``begin_tool``,
``begin_approval``, ...). What it is at any moment is :meth:`Session.snapshot`,
which the log writer stores with every event, so a replica that adopts the
session (:meth:`Session.restore`) continues exactly where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from statemachines import SessionModel, State, Transition

from aura.auth import Grant, Principal
from aura.ids import SessionId
from aura.session import events
from aura.session.events import EventData
from aura.session.plan import Plan, PlanStep
from aura.session.snapshot import Snapshot
from aura.telemetry import tracing
from aura.telemetry.tracing import TraceContext


@dataclass(frozen=True, slots=True)
class SessionRequest:
    prompt: str
    context: dict[str, Any]
    agent_id: str | None = None
    # What DWP calls as the user are minted from (a token per call); the caller's own token is never kept.
    delegation: Grant | None = None
    trace_context: TraceContext | None = None  # the caller's traceparent: the parent of the run's span


@dataclass(eq=False, slots=True)
class Session:
    """Identity equality (``eq=False``): transitions' ``add_model`` skips a value-equal model."""

    id: SessionId
    owner: Principal
    request: SessionRequest
    created_at: float = field(default_factory=time.time)
    model: SessionModel = field(init=False)
    plan: Plan | None = None
    plan_version: int = 0  # bumped on every plan or outcome change: the writer stores the plan only then
    step_index: int = 0
    outcomes: dict[str, str | None] = field(default_factory=dict)  # step id -> tool result
    approval_deadline: float | None = None  # epoch seconds; kept across adoption
    tool_started: str | None = None  # a step whose tool began and has not reported back
    answered_chars: int = 0
    resumed_at_seq: int = 0  # the last seq of the log when this process took the session (0: new)
    cancel_requested: bool = False
    detached: bool = False  # this process stopped driving the session (drain, lease lost)
    stranded: bool = False  # stopped because Redis was away: the lease is still ours, to drive again
    on_transition: Callable[[Transition], None] | None = None  # told of every transition (the metrics)
    _transitions: list[EventData] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.model = SessionModel(listener=self._on_transition)

    @property
    def state(self) -> State:
        return self.model.current

    @property
    def pending_request_id(self) -> str | None:
        return self.model.pending_request_id

    # -- progress (changed only through these) ---------------------------------------------
    def set_plan(self, plan: Plan) -> None:
        self.plan = plan
        self.step_index = 0
        self.plan_version += 1

    def record_outcome(self, step_id: str, result: str | None) -> None:
        self.outcomes[step_id] = result
        self.step_index += 1
        self.plan_version += 1

    def begin_tool(self, step: PlanStep) -> None:
        self.tool_started = step.id

    def end_tool(self) -> None:
        self.tool_started = None

    def running_step(self) -> PlanStep | None:
        """The step whose tool began and has not reported back, if any."""
        if self.plan is None or self.tool_started is None:
            return None
        return next((step for step in self.plan.steps if step.id == self.tool_started), None)

    def begin_approval(self, request_id: str, deadline: float) -> None:
        """Record the request the session will wait for, and until when (before REQUEST_APPROVAL)."""
        self.model.begin_approval(request_id)
        self.approval_deadline = deadline

    def approval_time_left(self, now: float) -> float:
        return max((self.approval_deadline or now) - now, 0.0)

    def answered(self, chars: int) -> None:
        self.answered_chars += chars

    def detach(self) -> None:
        self.detached = True

    def strand(self) -> None:
        """Stop driving for now: Redis is away, and what the log lacks is redone from the snapshot later."""
        self.detached = True
        self.stranded = True

    def take_transition_events(self) -> list[EventData]:
        """The `state` events of transitions so far (machine callbacks cannot emit themselves)."""
        taken, self._transitions = self._transitions, []
        return taken

    def _on_transition(self, change: Transition) -> None:
        if self.on_transition is not None:
            self.on_transition(change)
        reason = self.model.abort_reason
        self._transitions.append(events.state_change(self.id, change, reason.value if reason else None))
        tracing.event("aura.session.transition", {"aura.session.from": change.source.value,
                                                  "aura.session.to": change.dest.value,
                                                  "aura.session.trigger": change.trigger.value})

    # -- snapshot -------------------------------------------------------------------------
    def snapshot(self, seq: int) -> Snapshot:
        return Snapshot(
            session_id=self.id,
            tenant_id=self.owner.tenant_id,
            user_id=self.owner.user_id,
            prompt=self.request.prompt,
            context=self.request.context,
            agent_id=self.request.agent_id,
            delegation=self.request.delegation,
            trace_context=self.request.trace_context,
            created_at=self.created_at,
            state=self.state,
            seq=seq,
            step=self.step_index,
            pending_request_id=self.model.pending_request_id,
            approval_deadline=self.approval_deadline,
            tool_started=self.tool_started,
            answered_chars=self.answered_chars,
            abort_reason=self.model.abort_reason,
            abort_detail=self.model.abort_detail,
            plan=self.plan,
            outcomes=self.outcomes,
            cancel_requested=self.cancel_requested,
        )

    @classmethod
    def restore(cls, snapshot: Snapshot) -> Session:
        """The session a snapshot describes; its model is attached to the machine by the registry."""
        request = SessionRequest(snapshot.prompt, snapshot.context, snapshot.agent_id, snapshot.delegation,
                                 snapshot.trace_context)
        owner = Principal(user_id=snapshot.user_id, tenant_id=snapshot.tenant_id)
        session = cls(SessionId(snapshot.session_id), owner, request, created_at=snapshot.created_at)
        session.plan = snapshot.plan
        session.outcomes = dict(snapshot.outcomes)
        session.step_index = snapshot.step
        session.resumed_at_seq = snapshot.seq
        session.tool_started = snapshot.tool_started
        session.answered_chars = snapshot.answered_chars
        session.approval_deadline = snapshot.approval_deadline
        session.model.pending_request_id = snapshot.pending_request_id
        session.model.abort_reason = snapshot.abort_reason
        session.model.abort_detail = snapshot.abort_detail
        session.cancel_requested = snapshot.cancel_requested
        return session
