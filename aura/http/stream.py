"""``POST /aura/test/stream`` (and the legacy GET): the agent session as SSE (CONTRACT §3).

request → caller (auth) → body → resume or a new session → its run → the SSE writer following its log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from aura import errors
from aura.auth import AGENT_HEADER, Authenticator, Principal
from aura.config import StreamAuthPolicy
from aura.http.body import parse_json_object, read_body, validate_agent_id, validate_context, validate_prompt
from aura.http.follow import SessionAccess
from aura.http.sse import EventStreamResponse, single_frames
from aura.ids import EventId
from aura.metrics import Metrics
from aura.session import events
from aura.session.session import Session, SessionRequest
from aura.telemetry import tracing

UNAUTHENTICATED_EVENT_ID = "unauthenticated.1"

CreateSession = Callable[[Principal, SessionRequest], Awaitable[Session]]


class StreamEndpoint:
    def __init__(
        self,
        authenticator: Authenticator,
        access: SessionAccess,
        create: CreateSession,
        start: Callable[[Session], object],
        *,
        auth_policy: StreamAuthPolicy,
        send_timeout_seconds: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._authenticator = authenticator
        self._access = access
        self._create = create
        self._start = start
        self._allow_missing = auth_policy is StreamAuthPolicy.COMPAT
        self._send_timeout = send_timeout_seconds

    async def stream(self, request: Request) -> Response:
        headers = request.headers
        caller = self._authenticator.caller(headers, allow_missing=self._allow_missing)
        if caller is None:
            frames = single_frames(unauthenticated_frame())
            return EventStreamResponse(frames, send_timeout=self._send_timeout, metrics=self._metrics)
        prompt, context = await _prompt_and_context(request)

        agent_id = validate_agent_id(headers.get(AGENT_HEADER))

        # Resume: replay after an id Aura issued to this owner; any other id starts afresh (CONTRACT §3.6).
        resume_from = EventId.parse(headers.get("last-event-id"))
        if resume_from is not None:
            snapshot = await self._access.owned(resume_from.session_id, caller.principal)
            if snapshot is not None and resume_from.seq <= snapshot.seq:
                slot = self._access.reserve(caller.principal)
                return self._access.follow(resume_from.session_id, resume_from.seq, slot)

        slot = self._access.reserve(caller.principal)  # before the session: a refused stream starts nothing
        try:
            # The gateway's traceparent, kept with the session: its run's span is a child of it.
            session_request = SessionRequest(prompt, context, agent_id, caller.delegation, tracing.incoming(headers))
            session = await self._create(caller.principal, session_request)
        except BaseException:
            slot.release()
            raise
        self._start(session)
        return self._access.follow(session.id, 0, slot)


async def _prompt_and_context(request: Request) -> tuple[str, dict[str, Any]]:
    if request.method == "GET":  # legacy curl form (CONTRACT §1.4)
        query = request.query_params
        return validate_prompt(query.get("prompt") or query.get("message")), {}
    body = parse_json_object(await read_body(request))
    return validate_prompt(body.get("prompt")), validate_context(body.get("context"))


def unauthenticated_frame() -> bytes:
    """CONTRACT §2.5 compat mode: one `error` event (E2000), then [DONE]; the agent never runs."""
    data = events.error(errors.UNAUTHENTICATED, "Authorization header is required", session_id=None, reason=None)
    return events.standalone_frame(UNAUTHENTICATED_EVENT_ID, data)
