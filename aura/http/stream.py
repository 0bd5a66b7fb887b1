"""``POST /aura/test/stream`` (and the legacy GET): the agent session as SSE (CONTRACT §3)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from aura.auth import AGENT_HEADER, Principal, bearer_token, check_principal, tenant_header
from aura.config import StreamAuthPolicy
from aura.errors import Unauthorized
from aura.events import PAYLOAD_VERSION, encode_frame
from aura.http.body import parse_json_object, read_body, validate_context, validate_prompt
from aura.http.storage import bounded
from aura.ids import EventId
from aura.runtime import Runtime
from aura.session import SessionRequest
from aura.sse import EventStreamResponse, feed_frames, single_frames


async def stream(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    headers = request.headers
    principal = authenticate(runtime, headers, allow_missing=runtime.settings.stream_auth is StreamAuthPolicy.COMPAT)
    if principal is None:
        return EventStreamResponse(single_frames(_unauthenticated_frame()))

    # Resume: replay after an id Aura issued to this owner; any other id starts afresh (CONTRACT §3.6).
    resume_from = EventId.parse(headers.get("last-event-id"))
    if resume_from is not None:
        snapshot = await owned_snapshot(runtime, resume_from.session_id, principal)
        if snapshot is not None and resume_from.seq <= int(snapshot.get("seq") or 0):
            return follow(runtime, resume_from.session_id, resume_from.seq)

    if request.method == "GET":  # legacy curl form (CONTRACT §1.4)
        prompt = validate_prompt(request.query_params.get("prompt") or request.query_params.get("message"))
        context: dict[str, object] = {}
    else:
        body = parse_json_object(await read_body(request))
        prompt = validate_prompt(body.get("prompt"))
        context = validate_context(body.get("context"))
    token = bearer_token(headers)
    request_data = SessionRequest(prompt, context, headers.get(AGENT_HEADER), f"Bearer {token}")
    session = await bounded(runtime.sessions.create(principal, request_data), runtime.settings.redis_timeout_seconds)
    runtime.start(session)
    return follow(runtime, session.id, 0)


def authenticate(runtime: Runtime, headers: Mapping[str, str], *, allow_missing: bool = False) -> Principal | None:
    """X-Tenant-ID, then the bearer token, then tenant/user match (CONTRACT §2.4)."""
    tenant = tenant_header(headers)
    token = bearer_token(headers)
    if token is None:
        if allow_missing:
            return None
        raise Unauthorized("Authorization header is required")
    principal = runtime.verifier.principal(token)
    check_principal(principal, headers, tenant)
    return principal


async def owned_snapshot(runtime: Runtime, session_id: str, principal: Principal) -> dict[str, str] | None:
    """The session's snapshot, only for its owner: anyone else learns nothing, not even that it exists."""
    snapshot = await bounded(runtime.session_store.load(session_id), runtime.settings.redis_timeout_seconds)
    if snapshot is None or snapshot.get("tenantId") != principal.tenant_id or snapshot.get("userId") != principal.user_id:
        return None
    return snapshot


def follow(runtime: Runtime, session_id: str, after_seq: int) -> Response:
    return EventStreamResponse(
        feed_frames(runtime.feed(session_id), after_seq=after_seq, heartbeat_seconds=runtime.settings.heartbeat_seconds)
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
