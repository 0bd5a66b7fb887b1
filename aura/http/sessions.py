"""The session API: snapshot, event log and cancel, scoped to the owner (tenant and user); and the
list of the tenant's live sessions."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from aura.auth import Authenticator, Principal
from aura.errors import NotFound, ValidationFailed
from aura.http.envelope import success_response
from aura.http.follow import SessionAccess
from aura.ids import EventId
from aura.session.listing import Listing, LiveSessions
from aura.session.snapshot import Snapshot, public_view
from aura.session.store import SessionStore
from aura.storage.calls import bounded


class SessionEndpoints:
    def __init__(
        self,
        authenticator: Authenticator,
        access: SessionAccess,
        store: SessionStore,
        live: LiveSessions,
        *,
        redis_timeout_seconds: float,
    ) -> None:
        self._authenticator = authenticator
        self._access = access
        self._store = store
        self._live = live
        self._timeout = redis_timeout_seconds

    async def list_sessions(self, request: Request) -> Response:
        """``GET /aura/sessions``: the caller's tenant's newest live sessions (the console's list)."""
        caller = self._authenticator.caller(request.headers)
        assert caller is not None
        listing = await self._live.of_tenant(caller.principal)
        return success_response(_listing_view(listing), message="Live sessions retrieved")

    async def _owned(self, request: Request) -> tuple[str, Snapshot, Principal]:
        caller = self._authenticator.caller(request.headers)
        assert caller is not None
        session_id = request.path_params["session_id"]
        snapshot = await self._access.owned(session_id, caller.principal)
        if snapshot is None:
            raise NotFound(f"Session not found: {session_id}")
        return session_id, snapshot, caller.principal

    async def get_session(self, request: Request) -> Response:
        """``GET /aura/sessions/{sessionId}``: the snapshot as JSON."""
        _, snapshot, _ = await self._owned(request)
        return success_response(public_view(snapshot), message="Session retrieved")

    async def session_events(self, request: Request) -> Response:
        """``GET /aura/sessions/{sessionId}/events``: the log after ``Last-Event-ID`` (or ``?after=``), then live."""
        session_id, snapshot, principal = await self._owned(request)
        after = 0
        cursor = EventId.parse(request.headers.get("last-event-id"))
        if cursor is not None and cursor.session_id == session_id:
            after = cursor.seq
        elif "after" in request.query_params:
            text = request.query_params["after"]
            if not text.isdigit():
                raise ValidationFailed("after must be a non-negative integer")
            after = int(text)
        if after > snapshot.seq:
            raise ValidationFailed(f"after ({after}) is beyond the last event of {session_id}")
        return self._access.follow(session_id, after, self._access.reserve(principal))

    async def cancel_session(self, request: Request) -> Response:
        """``POST /aura/sessions/{sessionId}/cancel``: whichever replica drives the session aborts it."""
        session_id, snapshot, _ = await self._owned(request)
        if snapshot.is_final:
            raise ValidationFailed(f"Session {session_id} is already {snapshot.state.value}", error_code="E3002")
        await bounded(self._store.request_cancel(session_id), self._timeout, "request cancel")
        return success_response(
            {"sessionId": session_id, "status": "cancelling"}, message="Cancel requested", status_code=202
        )


def _listing_view(listing: Listing) -> dict[str, Any]:
    sessions: list[dict[str, Any]] = []
    for session in listing.sessions:
        view: dict[str, Any] = {
            "sessionId": session.session_id,
            "userId": session.user_id,
            "state": session.state.value,
            "createdAt": session.created_at,
            "updatedAt": session.updated_at,
            "pendingRequestId": session.pending_request_id,
            "own": session.own,
        }
        if session.prompt is not None:
            view["prompt"] = session.prompt
        sessions.append(view)
    return {"sessions": sessions, "total": listing.total, "limit": listing.limit}
