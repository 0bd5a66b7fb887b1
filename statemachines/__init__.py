"""The pure core of Aura: the agent-session state machine, with no I/O.

Nothing here imports from ``aura``; the adapters in ``aura`` import from here.
"""

from statemachines.definition import describe
from statemachines.diagram import render_dot, render_mermaid
from statemachines.session import (
    FINAL_STATES,
    TRANSITIONS,
    AbortReason,
    SessionMachine,
    SessionModel,
    State,
    Transition,
    TransitionListener,
    Trigger,
    new_session_machine,
)

__all__ = [
    "FINAL_STATES",
    "TRANSITIONS",
    "AbortReason",
    "SessionMachine",
    "SessionModel",
    "State",
    "Transition",
    "TransitionListener",
    "Trigger",
    "describe",
    "new_session_machine",
    "render_dot",
    "render_mermaid",
]
