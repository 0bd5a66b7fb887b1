"""``POST /aura/test/stream`` (and the legacy GET): the agent session as SSE (CONTRACT §3)."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from aura.auth import AGENT_HEADER, bearer_token, check_principal, tenant_header
from aura.config import StreamAuthPolicy
from aura.errors import Unauthorized
from aura.events import PAYLOAD_VERSION, encode_frame
from aura.feed import SessionFeed
from aura.http.body import parse_json_object, read_body, validate_context, validate_prompt
from aura.ids import EventId
from aura.runtime import Runtime
from aura.session import SessionRequest
from aura.sse import EventStreamResponse, feed_frames, single_frames


async def stream(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    headers = request.headers
    tenant = tenant_header(headers)
    token = bearer_token(headers)
    if token is None:
        if runtime.settings.stream_auth is StreamAuthPolicy.STRICT:
            raise Unauthorized("Authorization header is required")
        return EventStreamResponse(single_frames(_unauthenticated_frame()))
    principal = runtime.verifier.principal(token)
    check_principal(principal, headers, tenant)

    # Resume: replay after an id Aura issued to this owner; any other id starts afresh (CONTRACT §3.6).
    resume_from = EventId.parse(headers.get("last-event-id"))
    if resume_from is not None:
        session = runtime.sessions.get(resume_from.session_id, principal)
        if session is not None and resume_from.seq <= session.feed.last_seq:
            return _follow(runtime, session.feed, resume_from.seq)

    if request.method == "GET":  # legacy curl form (CONTRACT §1.4)
        prompt = validate_prompt(request.query_params.get("prompt") or request.query_params.get("message"))
        context: dict[str, object] = {}
    else:
        body = parse_json_object(await read_body(request))
        prompt = validate_prompt(body.get("prompt"))
        context = validate_context(body.get("context"))
    request_data = SessionRequest(prompt, context, headers.get(AGENT_HEADER), f"Bearer {token}")
    session = runtime.sessions.create(principal, request_data)
    runtime.start(session)
    return _follow(runtime, session.feed, 0)


def _follow(runtime: Runtime, feed: SessionFeed, after_seq: int) -> Response:
    return EventStreamResponse(
        feed_frames(feed, after_seq=after_seq, heartbeat_seconds=runtime.settings.heartbeat_seconds)
    )


def _unauthenticated_frame() -> bytes:
    """CONTRACT §2.5 compat mode: one `error` event (E2000), then [DONE]; the agent never runs."""
    message = "Authorization header is required"
    payload = {
        "type": "error",
        "version": PAYLOAD_VERSION,
        "eventId": "unauthenticated.1",
        "timestamp": int(time.time()),
        "data": {"message": message, "error": message, "errorType": "AuthenticationError", "code": "E2000"},
    }
    return encode_frame("unauthenticated.1", "error", payload)
