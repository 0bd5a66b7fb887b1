"""What each route does, for the API description: one entry per route and method, in :data:`OPERATIONS`.

A route added to the app (aura/http/app.py) needs its entry here, keyed by its method and its
path as OpenAPI writes it (a converter dropped: ``/aura/console/{path:path}`` is
``/aura/console/{path}``); tests/aura/http/openapi/test_document.py names every route that has
none, and every entry whose route is gone. Each value is an OpenAPI Operation Object; path
parameters are added from :data:`PATH_PARAMETERS`. The shapes live in :mod:`.schemas`.
"""

from __future__ import annotations

from typing import Any, Final

from aura.http.openapi.schemas import AGENT_ID, ERROR_CODES, Schema, ref
from aura.http.sse import SSE_HEADERS

Operation = dict[str, Any]

# Security requirements (components.securitySchemes): a list of alternatives, each a set that must all hold.
Security = list[dict[str, list[str]]]
PUBLIC: Final[Security] = []
CALLER: Final[Security] = [{"bearerAuth": [], "tenantHeader": []}]  # CONTRACT §2.3-2.4: JWT + X-Tenant-ID
APPROVER: Final[Security] = [{"bearerAuth": [], "tenantHeader": [], "userHeader": []}]  # and X-User-ID (main-service's)
OPTIONAL_CALLER: Final[Security] = [{}, *CALLER]  # public; a valid caller sees more


def json_content(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def body_response(media_type: str, schema: Schema, description: str, **extra: Any) -> dict[str, Any]:
    """A response of ``media_type`` (``text/plain; version=0.0.4``, ``text/html``, ...)."""
    return {"description": description, "content": {media_type: {"schema": schema}}, **extra}


def ok(schema_name: str, description: str) -> dict[str, Any]:
    """A JSON response whose body is the schema ``schema_name``."""
    return body_response("application/json", ref(schema_name), description)


def errors(*statuses: int) -> dict[str, Any]:
    """The ApiResponse error responses of ``statuses`` (components.responses, one per status)."""
    return {str(status): {"$ref": f"#/components/responses/Error{status}"} for status in statuses}


def json_body(schema_name: str, description: str) -> dict[str, Any]:
    return {"required": True, "description": description, "content": json_content(ref(schema_name))}


def _header(name: str, description: str, schema: Schema, *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "description": description, "schema": schema}


def event_stream(description: str) -> dict[str, Any]:
    """200 ``text/event-stream``: frames whose data: lines are StreamEvents (CONTRACT §3.2-3.3)."""
    return {
        "description": description,
        "headers": {
            name.title(): {"required": True, "schema": {"const": value}}
            for name, value in SSE_HEADERS.items() if name != "content-type"
        },
        "content": {"text/event-stream": {
            "schema": {
                "type": "string",
                "description": "Frames of `id: {sessionId}.{seq}`, `event: <type>` and `data: <StreamEvent JSON>` "
                "lines and a blank line, one write each; `: keepalive id:-` every AURA_HEARTBEAT_SECONDS while "
                "idle; `data: [DONE]` at the end. A shutdown ends the stream with `: server draining, reconnect "
                "with Last-Event-ID id:-` and no [DONE].",
            },
            # OpenAPI 3.1 cannot say what each item of a stream is; 3.2's itemSchema can (DECISIONS #67).
            "x-itemSchema": ref("StreamEvent"),
            "example": (
                "id: sess_3f0c9b2a7d1e4c5b6a7f8e9d.1\nevent: thought\ndata: {\"type\":\"thought\",\"version\":\"1.0\","
                "\"eventId\":\"sess_3f0c9b2a7d1e4c5b6a7f8e9d.1\",\"timestamp\":1706152860,\"data\":{\"content\":"
                "\"Analyzing the request...\",\"thoughtType\":\"analysis\",\"timestamp\":1706152860}}\n\n"
                ": keepalive id:-\n\ndata: [DONE]\n\n"
            ),
        }},
    }


AGENT_HEADER: Final = _header("X-Agent-ID", "The frontend's agent session, kept with the session and resent on every "
                              "DWP call (DECISIONS #51)", AGENT_ID)
LAST_EVENT_ID: Final = _header("Last-Event-ID", "An id Aura issued to this owner resumes after it; any other "
                               "value is ignored (CONTRACT §3.6)", {"type": "string"})
# Path parameters by name: the document adds them to every operation whose path has them.
PATH_PARAMETERS: Final[dict[str, dict[str, Any]]] = {
    "session_id": {"description": "A session id, `sess_` and 24 hex digits; any other is a 404",
                   "schema": {"type": "string"}, "example": "sess_3f0c9b2a7d1e4c5b6a7f8e9d"},
    "request_id": {"description": "An approval request id, from the `hitl` event", "schema": {"type": "string"},
                   "example": "req_9c2e41b07d3a4f5e8b6c1d2e"},
}

_STREAM_ERRORS: Final = errors(400, 401, 403, 413, 429, 500, 503)
_SESSION_ERRORS: Final = errors(400, 401, 403, 404, 500, 503)
_APPROVAL_ERRORS: Final = errors(400, 401, 403, 404, 413, 500, 503)
_STREAM_TEXT: Final = (
    "Streams a new agent session as Server-Sent Events: its thoughts, plan, tool calls, approvals and answer "
    "(docs/EVENTS.md). Behind the gateway: `/api/aura/test/stream`. The session runs on whether or not the "
    "client stays; a reconnect with its Last-Event-ID replays what it missed, on any replica. With "
    "AURA_STREAM_AUTH=compat a request without a token gets a 200 stream of one `error` event (E2000) and "
    "[DONE] instead of a 401 (CONTRACT §2.5); the agent never runs for it."
)


def _decision(verb: str, past: str, summary: str) -> Operation:
    return {
        "operationId": f"{verb}Request",
        "tags": ["approvals"],
        "summary": summary,
        "description": f"main-service's semantics (CONTRACT §4.4): records the decision in `hitl:request:{{id}}`, "
        f"writes `hitl:signal:{{sessionId}}` and publishes on `hitl:channel:{{sessionId}}`; the waiting session "
        f"resumes on whichever replica drives it. The recorded approver is the token's subject (DECISIONS #41), "
        f"and the stored tenant must be the caller's exactly (#40). Behind the gateway these paths go to "
        f"main-service, which behaves the same.",
        "security": APPROVER,
        "requestBody": json_body("DecisionRequest", f"`{{\"userId\": \"<the token's sub>\"}}`{past}"),
        "responses": {
            "200": ok("DecisionEnvelope", f"Request {verb}d"),
            "409": ok("DecisionEnvelope", "Already decided: the same envelope, `success: true`, nothing written"),
            **_APPROVAL_ERRORS,
        },
    }


OPERATIONS: Final[dict[tuple[str, str], Operation]] = {
    ("POST", "/aura/test/stream"): {
        "operationId": "streamSession",
        "tags": ["sessions"],
        "summary": "Start an agent session and stream it",
        "description": _STREAM_TEXT,
        "security": CALLER,
        "parameters": [AGENT_HEADER, LAST_EVENT_ID],
        "requestBody": json_body("StreamRequest", "The prompt and the page's context (CONTRACT §3.1)"),
        "responses": {"200": event_stream("The session's events, then [DONE]"), **_STREAM_ERRORS},
    },
    ("GET", "/aura/test/stream"): {
        "operationId": "streamSessionLegacy",
        "tags": ["sessions"],
        "summary": "Start an agent session and stream it (the legacy curl form)",
        "description": "As the POST (CONTRACT §1.4), with the prompt in the query and an empty context.",
        "security": CALLER,
        "parameters": [
            {"name": "prompt", "in": "query", "schema": {"type": "string"}, "description": "the prompt"},
            {"name": "message", "in": "query", "schema": {"type": "string"}, "description": "the prompt, when "
             "`prompt` is absent"},
            AGENT_HEADER,
            LAST_EVENT_ID,
        ],
        "responses": {"200": event_stream("The session's events, then [DONE]"), **_STREAM_ERRORS},
    },
    ("GET", "/aura/sessions/{session_id}"): {
        "operationId": "getSession",
        "tags": ["sessions"],
        "summary": "A session's snapshot",
        "description": "To its owner (tenant and user) only; anyone else gets the 404 of an unknown session. A "
        "finished session stays AURA_FINISHED_SESSION_TTL_SECONDS.",
        "security": CALLER,
        "responses": {"200": ok("SessionEnvelope", "Session retrieved"), **_SESSION_ERRORS},
    },
    ("GET", "/aura/sessions/{session_id}/events"): {
        "operationId": "followSession",
        "tags": ["sessions"],
        "summary": "A session's events after a cursor, then live",
        "description": "Replays the log after Last-Event-ID (an id of this session) or `after`, then follows "
        "the session live; a cursor older than the bounded log gets one `snapshot` event first.",
        "security": CALLER,
        "parameters": [
            LAST_EVENT_ID,
            {"name": "after", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]+$"},
             "description": "a seq; 400 E4000 when not a non-negative integer or beyond the last event"},
        ],
        "responses": {"200": event_stream("The events after the cursor, then [DONE]"),
                      **_SESSION_ERRORS, **errors(429)},
    },
    ("POST", "/aura/sessions/{session_id}/cancel"): {
        "operationId": "cancelSession",
        "tags": ["sessions"],
        "summary": "Cancel a session",
        "description": "The session ends `aborted` (`cancelled`) on whichever replica drives it; a session "
        "that already ended is 400 E3002.",
        "security": CALLER,
        "responses": {"202": ok("CancelEnvelope", "Cancel requested"), **_SESSION_ERRORS},
    },
    ("POST", "/aura/hitl/approve/{request_id}"): _decision("approve", "", "Approve an action a session waits for"),
    ("POST", "/aura/hitl/reject/{request_id}"): _decision(
        "reject", ", and a `reason` for the user", "Reject an action a session waits for"),
    ("GET", "/aura/hitl/requests/{request_id}"): {
        "operationId": "getApprovalRequest",
        "tags": ["approvals"],
        "summary": "An approval request as stored",
        "description": "The stored JSON as a string (CONTRACT §4.4), to the record's own tenant only: another "
        "tenant's is the 404 of an unknown one (DECISIONS #48).",
        "security": APPROVER,
        "responses": {"200": ok("StoredJsonEnvelope", "Approval request retrieved"),
                      **errors(400, 401, 403, 404, 500, 503)},
    },
    ("GET", "/aura/hitl/signals/{session_id}"): {
        "operationId": "getApprovalSignal",
        "tags": ["approvals"],
        "summary": "The last decision signal of a session",
        "description": "The signal JSON as a string (CONTRACT §4.3), to the tenant of the session's request only; "
        "without one the envelope has no `data` (\"No signal found for session\").",
        "security": APPROVER,
        "responses": {"200": ok("StoredJsonEnvelope", "Signal retrieved, or none found"),
                      **errors(400, 401, 403, 500, 503)},
    },
    ("GET", "/aura/health"): {
        "operationId": "readiness",
        "tags": ["operations"],
        "summary": "Readiness",
        "description": "UP when Redis takes writes, this instance's heartbeat is current and the approval "
        "subscriber listens. Public; with a valid token for its X-Tenant-ID the body also has this process's "
        "session counts.",
        "security": OPTIONAL_CALLER,
        "responses": {"200": ok("Health", "UP"), "503": ok("Health", "DEGRADED")},
    },
    ("GET", "/aura/agents/health"): {
        "operationId": "agentsReadiness",
        "tags": ["operations"],
        "summary": "Readiness (the path the DWP integration scripts use)",
        "description": "The same as /aura/health.",
        "security": OPTIONAL_CALLER,
        "responses": {"200": ok("Health", "UP"), "503": ok("Health", "DEGRADED")},
    },
    ("GET", "/aura/info"): {
        "operationId": "info",
        "tags": ["operations"],
        "summary": "What this instance is and offers",
        "security": PUBLIC,
        "responses": {"200": ok("Info", "The version, the stream's auth mode, the approval timeout, the tools")},
    },
    ("GET", "/health"): {
        "operationId": "liveness",
        "tags": ["operations"],
        "summary": "Liveness",
        "description": "The process answers; Redis is not consulted, so an outage never restarts Aura.",
        "security": PUBLIC,
        "responses": {"200": ok("Liveness", "UP")},
    },
    ("GET", "/aura/sessions"): {
        "operationId": "listSessions",
        "tags": ["sessions"],
        "summary": "The caller's tenant's live sessions",
        "description": "The newest live sessions of the caller's tenant (at most `limit`) with their state, and "
        "how many there are; prompts only on the caller's own (DECISIONS #70).",
        "security": CALLER,
        "responses": {"200": ok("SessionListEnvelope", "Live sessions retrieved"), **errors(400, 401, 403, 500, 503)},
    },
    ("GET", "/aura/console"): {
        "operationId": "console",
        "tags": ["console"],
        "summary": "The console: a page to run and approve sessions",
        "description": "One static page (no build step, nothing loaded from elsewhere: DECISIONS #68); the token "
        "is entered on it, or minted on the public dev secret only (#69).",
        "security": PUBLIC,
        "responses": {"200": body_response("text/html", {"type": "string"}, "The page (UTF-8)")},
    },
    ("GET", "/aura/console/machine.json"): {
        "operationId": "consoleMachine",
        "tags": ["console"],
        "summary": "The session machine's definition, for the console's diagram",
        "security": PUBLIC,
        "responses": {"200": body_response("application/json", ref("MachineDefinition"), "The definition")},
    },
    ("GET", "/aura/console/static/{path}"): {
        "operationId": "consoleFile",
        "tags": ["console"],
        "summary": "The console's script and style sheet",
        "security": PUBLIC,
        "responses": {"200": {"description": "The file (UTF-8)", "content": {
            "text/javascript": {"schema": {"type": "string"}},
            "text/css": {"schema": {"type": "string"}}}},
            **errors(404)},
    },
    ("POST", "/aura/console/dev-token"): {
        "operationId": "consoleDevToken",
        "tags": ["console"],
        "summary": "A development token (only on the public dev secret)",
        "description": "Exists only when JWT_SECRET is the public DWP dev secret and AURA_ALLOW_DEV_SECRET=true "
        "(make run); anywhere else the path is a 404 (DECISIONS #69).",
        "security": PUBLIC,
        "requestBody": {"required": False, "content": json_content(ref("DevTokenRequest"))},
        "responses": {"200": ok("DevTokenEnvelope", "Dev token minted (public dev secret)"), **errors(400, 413)},
    },
    ("GET", "/aura/openapi.json"): {
        "operationId": "apiDescription",
        "tags": ["operations"],
        "summary": "This document",
        "description": "OpenAPI 3.1, built from the app's routes; public (DECISIONS #66).",
        "security": PUBLIC,
        "responses": {"200": ok("OpenApiDocument", "The API description")},
    },
    ("GET", "/metrics"): {
        "operationId": "metrics",
        "tags": ["operations"],
        "summary": "This process's Prometheus metrics",
        "description": "The runtime's prometheus-client registry: the Prometheus text format, or OpenMetrics when "
        "Accept asks for it. Per process; outside /aura/, so not through the gateway, and without a token "
        "(DECISIONS #59); absent with AURA_METRICS=false. Every series is listed in the README (\"Metrics\").",
        "security": PUBLIC,
        "servers": [{"url": "/", "description": "Aura itself: the gateway does not forward /metrics"}],
        "responses": {"200": {
            "description": "Every family, with its HELP and TYPE: `text/plain; version=0.0.4`, or "
            "`application/openmetrics-text; version=1.0.0` when Accept asks for it (UTF-8)",
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}},
            },
        }},
    },
}

# components.responses: one per error status, whose errorCodes are those of schemas.ERROR_CODES.
RESPONSES: Final[dict[str, Any]] = {
    f"Error{status}": {
        "description": "; ".join(f"{code}: {meaning}" for code, meaning in codes.items()),
        "content": json_content(ref(f"Error{status}")),
        **({"headers": {"Retry-After": {"required": True, "description": "seconds", "schema": {"type": "string",
                                                                                                "pattern": "^[0-9]+$"}}}}
           if status == 429 else {}),
    }
    for status, codes in ERROR_CODES.items()
}

# Routes that exist only when a setting turns them on: absent, they are no drift (and not in the document).
OPTIONAL: Final[frozenset[tuple[str, str]]] = frozenset({
    ("GET", "/metrics"),  # AURA_METRICS=false
    ("POST", "/aura/console/dev-token"),  # only on the public dev secret (DECISIONS #69)
})
