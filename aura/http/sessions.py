"""The session API: snapshot, event log and cancel, scoped to the owner (tenant and user)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from aura.envelope import success_response
from aura.errors import NotFound, ValidationFailed
from aura.http.storage import bounded
from aura.http.stream import authenticate, follow, owned_snapshot
from aura.ids import EventId
from aura.runtime import Runtime
from aura.snapshot import public_view
from statemachines import FINAL_STATES


async def _owned(request: Request) -> tuple[Runtime, str, dict[str, str]]:
    runtime: Runtime = request.app.state.runtime
    principal = authenticate(runtime, request.headers)
    assert principal is not None
    session_id = request.path_params["session_id"]
    snapshot = await owned_snapshot(runtime, session_id, principal)
    if snapshot is None:
        raise NotFound(f"Session not found: {session_id}")
    return runtime, session_id, snapshot


async def get_session(request: Request) -> Response:
    """``GET /aura/sessions/{sessionId}``: the snapshot as JSON."""
    _, _, snapshot = await _owned(request)
    return success_response(public_view(snapshot), message="Session retrieved")


async def session_events(request: Request) -> Response:
    """``GET /aura/sessions/{sessionId}/events``: the log after ``Last-Event-ID`` (or ``?after=``), then live."""
    runtime, session_id, snapshot = await _owned(request)
    after = 0
    cursor = EventId.parse(request.headers.get("last-event-id"))
    if cursor is not None and cursor.session_id == session_id:
        after = cursor.seq
    elif "after" in request.query_params:
        text = request.query_params["after"]
        if not text.isdigit():
            raise ValidationFailed("after must be a non-negative integer")
        after = int(text)
    if after > int(snapshot.get("seq") or 0):
        raise ValidationFailed(f"after ({after}) is beyond the last event of {session_id}")
    return follow(runtime, session_id, after)


async def cancel_session(request: Request) -> Response:
    """``POST /aura/sessions/{sessionId}/cancel``: whichever replica drives the session aborts it."""
    runtime, session_id, snapshot = await _owned(request)
    if snapshot.get("state") in {state.value for state in FINAL_STATES}:
        raise ValidationFailed(f"Session {session_id} is already {snapshot.get('state')}", error_code="E3002")
    await bounded(runtime.session_store.request_cancel(session_id), runtime.settings.redis_timeout_seconds)
    return success_response(
        {"sessionId": session_id, "status": "cancelling"}, message="Cancel requested", status_code=202
    )
