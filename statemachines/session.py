"""States, triggers and guards of one agent session.

One shared transitions ``Machine`` drives every live session (``add_model`` on
start, ``remove_model`` at the end): a machine per session would cost ~1 ms to
build. It is the synchronous machine: every guard and callback here is
synchronous, and ``AsyncMachine``'s awaiting of each callback cost a session
more CPU than the rest of its state handling (docs/BENCHMARKS.md); a trigger
cannot interleave with another coroutine, so no queue is needed.
Triggers never raise for an illegal move: :meth:`SessionModel.fire` returns
``False`` instead, so duplicate or stale inputs (a second approval, a signal for
another request) are harmless no-ops.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from transitions import EventData, Machine


class State(str, enum.Enum):
    PLANNING = "planning"  # the planner is turning the prompt into steps
    EXECUTING = "executing"  # steps and tools are running
    AWAITING_APPROVAL = "awaiting_approval"  # paused until a human approves or rejects
    DONE = "done"  # final: every step ran and the answer was sent
    ABORTED = "aborted"  # final: see SessionModel.abort_reason


class Trigger(str, enum.Enum):
    START_EXECUTION = "start_execution"
    REQUEST_APPROVAL = "request_approval"
    APPROVE = "approve"
    REJECT = "reject"
    TIME_OUT = "time_out"
    CANCEL = "cancel"
    FAIL = "fail"
    FINISH = "finish"


class AbortReason(str, enum.Enum):
    REJECTED = "rejected"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    FAILED = "failed"


FINAL_STATES: Final = frozenset({State.DONE, State.ABORTED})
_LIVE: Final = [State.PLANNING.value, State.EXECUTING.value, State.AWAITING_APPROVAL.value]

_ABORT_REASON_BY_TRIGGER: Final = {
    Trigger.REJECT.value: AbortReason.REJECTED,
    Trigger.TIME_OUT.value: AbortReason.TIMEOUT,
    Trigger.CANCEL.value: AbortReason.CANCELLED,
    Trigger.FAIL.value: AbortReason.FAILED,
}

STATES: Final[list[dict[str, Any]]] = [
    {"name": State.PLANNING.value},
    {"name": State.EXECUTING.value},
    {"name": State.AWAITING_APPROVAL.value},
    {"name": State.DONE.value, "final": True},
    {"name": State.ABORTED.value, "final": True, "on_enter": "on_enter_aborted"},
]

# The single definition: the live machine and the diagram are both built from it.
TRANSITIONS: Final[list[dict[str, Any]]] = [
    {"trigger": Trigger.START_EXECUTION.value, "source": State.PLANNING.value, "dest": State.EXECUTING.value},
    {
        "trigger": Trigger.REQUEST_APPROVAL.value,
        "source": State.EXECUTING.value,
        "dest": State.AWAITING_APPROVAL.value,
        "conditions": "has_pending_request",
    },
    {
        "trigger": Trigger.APPROVE.value,
        "source": State.AWAITING_APPROVAL.value,
        "dest": State.EXECUTING.value,
        "conditions": "matches_pending_request",
        "after": "clear_pending_request",
    },
    {
        "trigger": Trigger.REJECT.value,
        "source": State.AWAITING_APPROVAL.value,
        "dest": State.ABORTED.value,
        "conditions": "matches_pending_request",
    },
    {"trigger": Trigger.TIME_OUT.value, "source": State.AWAITING_APPROVAL.value, "dest": State.ABORTED.value},
    {"trigger": Trigger.FINISH.value, "source": State.EXECUTING.value, "dest": State.DONE.value},
    {"trigger": Trigger.CANCEL.value, "source": _LIVE, "dest": State.ABORTED.value},
    {"trigger": Trigger.FAIL.value, "source": _LIVE, "dest": State.ABORTED.value},
]


@dataclass(frozen=True, slots=True)
class Transition:
    """What one successful trigger did; sent to every listener."""

    source: State
    dest: State
    trigger: Trigger


TransitionListener = Callable[[Transition], None]


class SessionModel:
    """The machine's model: one per session.

    A plain class, so equality is identity: transitions' ``add_model`` checks
    membership with ``==`` and silently skips a value-equal model.
    """

    state: str  # set by the machine

    def __init__(self, listener: TransitionListener | None = None) -> None:
        self.pending_request_id: str | None = None
        self.abort_reason: AbortReason | None = None
        self.abort_detail: str | None = None
        self.transitions_done = 0
        self._listener = listener
        self._events: dict[str, Any] | None = None  # the machine's events, set when attached

    # -- queries ---------------------------------------------------------------
    @property
    def current(self) -> State:
        return State(self.state)

    @property
    def is_final(self) -> bool:
        return self.current in FINAL_STATES

    # -- the one way to move ----------------------------------------------------
    async def fire(self, trigger: Trigger, *, request_id: str | None = None, detail: str | None = None) -> bool:
        """Fire ``trigger``; return whether the session moved (counted, so a refused trigger is False).

        Awaitable so that callers need not change if a guard ever has to wait; today it never does.
        """
        if self._events is None:
            raise RuntimeError("the model is not attached to a SessionMachine")
        before = self.transitions_done
        self._events[trigger.value].trigger(self, request_id=request_id, detail=detail)
        return self.transitions_done != before

    def begin_approval(self, request_id: str) -> None:
        """Record the request the session will wait for (before REQUEST_APPROVAL)."""
        self.pending_request_id = request_id

    # -- guards (names referenced by TRANSITIONS) -------------------------------
    def has_pending_request(self, event: EventData) -> bool:
        return self.pending_request_id is not None

    def matches_pending_request(self, event: EventData) -> bool:
        request_id = event.kwargs.get("request_id")
        return request_id is not None and request_id == self.pending_request_id

    # -- callbacks --------------------------------------------------------------
    def clear_pending_request(self, event: EventData) -> None:
        self.pending_request_id = None

    def on_enter_aborted(self, event: EventData) -> None:
        self.abort_reason = _ABORT_REASON_BY_TRIGGER[event.event.name]
        detail = event.kwargs.get("detail")
        self.abort_detail = detail if isinstance(detail, str) else None

    def after_transition(self, event: EventData) -> None:
        self.transitions_done += 1
        assert event.transition is not None
        change = Transition(
            source=State(event.transition.source),
            dest=State(event.transition.dest),
            trigger=Trigger(event.event.name),
        )
        if self._listener is not None:
            self._listener(change)


class SessionMachine:
    """The shared machine for all live sessions."""

    def __init__(self) -> None:
        # Refused triggers (a duplicate approval, a cancel after the end) are no-ops by design;
        # transitions would log a WARNING for each.
        logging.getLogger("transitions.core").setLevel(logging.ERROR)
        self._machine = Machine(
            model=None,
            states=[dict(state) for state in STATES],  # transitions writes into the dicts it is given
            transitions=TRANSITIONS,
            initial=State.PLANNING.value,
            auto_transitions=False,
            send_event=True,
            ignore_invalid_triggers=True,
            after_state_change="after_transition",
        )
        self._attached: set[SessionModel] = set()

    def add(self, model: SessionModel, state: State | None = None) -> None:
        """Attach ``model``; ``state`` restores a session persisted elsewhere (default: planning).

        Not transitions' ``add_model``: that binds ~20 partials to the model (6 KiB per live
        session), scans the list of models (O(n)), and cost 60 µs per session even with
        ``model_override``. The machine needs neither: every trigger goes through its events
        (:meth:`SessionModel.fire`), and callbacks are named in STATES and TRANSITIONS.
        """
        model.state = (state or State.PLANNING).value
        model._events = self._machine.events
        self._attached.add(model)

    def remove(self, model: SessionModel) -> None:
        if model in self._attached:
            self._attached.discard(model)
            model._events = None

    def __len__(self) -> int:
        return len(self._attached)


def new_session_machine() -> SessionMachine:
    return SessionMachine()
