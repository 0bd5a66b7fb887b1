"""Firing a session's triggers from its run, and recording what the transitions said."""

from __future__ import annotations

from statemachines import Trigger

from aura.errors import TransitionRefused
from aura.session.log_writer import LogWriter
from aura.session.session import Session


async def fire(writer: LogWriter, session: Session, trigger: Trigger, *, request_id: str | None = None) -> None:
    """Fire a trigger the run relies on; its `state` event is queued for the log."""
    moved = await session.model.fire(trigger, request_id=request_id)
    if not moved:
        raise TransitionRefused(session.id, trigger.value, session.state.value)
    writer.emit_all(session, session.take_transition_events())
