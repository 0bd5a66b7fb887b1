"""A live agent session: its identity, its state machine model and its event feed."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from statemachines import SessionMachine, SessionModel, State, Transition

from aura.auth import Principal
from aura.events import AgentEvent, EventType
from aura.feed import SessionFeed
from aura.ids import SessionId, new_session_id

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SessionRequest:
    prompt: str
    context: dict[str, Any]
    agent_id: str | None = None
    authorization: str | None = None  # "Bearer <jwt>", propagated to DWP tools; never logged or emitted


@dataclass(eq=False)
class Session:
    id: SessionId
    owner: Principal
    request: SessionRequest
    feed: SessionFeed
    model: SessionModel = field(init=False)
    created_at: float = field(default_factory=time.time)
    conversation: list[dict[str, Any]] = field(default_factory=list)  # the planner's chat so far

    def __post_init__(self) -> None:
        self.model = SessionModel(listener=self._on_transition)

    @property
    def state(self) -> State:
        return self.model.current

    def emit(self, type_: EventType, data: dict[str, Any]) -> AgentEvent:
        return self.feed.append(type_, data)

    def _on_transition(self, change: Transition) -> None:
        data: dict[str, Any] = {
            "sessionId": self.id,
            "from": change.source.value,
            "to": change.dest.value,
            "trigger": change.trigger.value,
        }
        if change.dest is State.ABORTED and self.model.abort_reason is not None:
            data["reason"] = self.model.abort_reason.value
        self.emit(EventType.STATE, data)


class SessionRegistry:
    """Live sessions, plus finished ones kept ``retention_seconds`` for replay by Last-Event-ID."""

    def __init__(self, machine: SessionMachine, *, retention_seconds: float) -> None:
        self._machine = machine
        self._retention = retention_seconds
        self._sessions: dict[SessionId, Session] = {}

    def create(self, owner: Principal, request: SessionRequest) -> Session:
        session_id = new_session_id()
        session = Session(session_id, owner, request, SessionFeed(session_id))
        self._machine.add(session.model)
        self._sessions[session_id] = session
        return session

    def get(self, session_id: SessionId, owner: Principal) -> Session | None:
        """The session, only for its owner (tenant and user): others learn nothing."""
        session = self._sessions.get(session_id)
        if session is None or session.owner != owner:
            return None
        return session

    def live(self) -> list[Session]:
        return [s for s in self._sessions.values() if not s.model.is_final]

    def __len__(self) -> int:
        return len(self._sessions)

    def finish(self, session: Session) -> None:
        """Detach a final session from the machine; forget it after the retention time."""
        self._machine.remove(session.model)
        session.feed.close()
        if self._retention <= 0:
            self._sessions.pop(session.id, None)
            return
        asyncio.get_running_loop().call_later(self._retention, self._sessions.pop, session.id, None)
