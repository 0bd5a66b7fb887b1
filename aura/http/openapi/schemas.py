"""Every shape of Aura's HTTP surface, as JSON Schema 2020-12 (OpenAPI 3.1's dialect), in one place.

:data:`SCHEMAS` is the document's ``components.schemas``: the ApiResponse envelope (CONTRACT §2.6),
its error codes (§2.7 and Aura's E1005), the request bodies, the session's public view and the
SSE events with their payloads (§3.4-3.5, docs/EVENTS.md). The events and the session view are
closed (``additionalProperties: false``): a field added to a builder and not here fails the test
that validates real frames against these schemas.
"""

from __future__ import annotations

import re
from typing import Any, Final

from statemachines import FINAL_STATES, AbortReason, State, Trigger

from aura import errors
from aura.http.body import MAX_AGENT_ID_CHARS, MAX_CONTEXT_DEPTH, MAX_CONTEXT_KEYS, MAX_PROMPT_CHARS
from aura.http.health import SERVICE_NAME
from aura.http.stream import UNAUTHENTICATED_EVENT_ID
from aura.session.events import MAX_CONTENT_CHARS, MAX_RESULT_CHARS, PAYLOAD_VERSION, EventType
from aura.session.results import MAX_ITEMS, RESULT_CHARS, TITLE_CHARS

Schema = dict[str, Any]

SCHEMA_PREFIX: Final = "#/components/schemas/"


def ref(name: str) -> Schema:
    return {"$ref": SCHEMA_PREFIX + name}


def _closed(properties: dict[str, Schema], *, optional: tuple[str, ...] = (), **extra: Any) -> Schema:
    """An object with exactly these properties, all required but ``optional``."""
    return {
        "type": "object",
        "required": [name for name in properties if name not in optional],
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


def _enum(values: list[str], description: str | None = None) -> Schema:
    schema: Schema = {"type": "string", "enum": values}
    if description:
        schema["description"] = description
    return schema


_TEXT: Final[Schema] = {"type": "string"}
_INTEGER: Final[Schema] = {"type": "integer"}
_NUMBER: Final[Schema] = {"type": "number"}
_BOOLEAN: Final[Schema] = {"type": "boolean"}
_OBJECT: Final[Schema] = {"type": "object"}
_UNIX_SECONDS: Final[Schema] = {"type": "integer", "description": "Unix time in whole seconds (CONTRACT §3.3)"}
_STATES: Final = [state.value for state in State]
_ABORT_REASONS: Final = [reason.value for reason in AbortReason]

SESSION_ID_PATTERN: Final = r"^sess_[0-9a-f]{24}$"  # aura/ids.py: what new_session_id() makes
REQUEST_ID_PATTERN: Final = r"^req_[0-9a-f]{24}$"
EVENT_ID_PATTERN: Final = rf"^(sess_[0-9a-f]{{24}}\.[0-9]{{1,12}}|{re.escape(UNAUTHENTICATED_EVENT_ID)})$"

# -- the error codes (CONTRACT §2.7; aura/errors.py) -------------------------------------------
# HTTP status → the errorCodes Aura answers it with, and when. 408, 431 and one 503 come from the
# HTTP server itself (aura/http/protocol.py), before any route runs.
ERROR_CODES: Final[dict[int, dict[str, str]]] = {
    400: {
        "E1001": "invalid input: a non-numeric X-Tenant-ID on the approval API, or a client that went away "
        "before its body was complete",
        "E2006": "X-Tenant-ID is missing (stream and session API)",
        "E3002": "invalid state: the session has already ended (cancel)",
        "E4000": "validation failed: a blank prompt or userId, a context that is not an object or has more "
        f"than {MAX_CONTEXT_KEYS} keys or {MAX_CONTEXT_DEPTH} levels, a bad X-Agent-ID, a bad `after`",
        "E4001": "a required field is missing: an empty body, no prompt",
        "E4002": "not a JSON object of valid UTF-8 text: a byte order mark, invalid UTF-8, a lone surrogate, "
        "not JSON, not an object",
    },
    401: {
        "E2000": "no bearer token (on the approval API also: no X-Tenant-ID or no X-User-ID)",
        "E2002": "the token has expired",
        "E2003": "the token is invalid: signature, algorithm, claims, issuer or audience",
    },
    403: {
        "E2001": "X-Tenant-ID or X-User-ID does not match the token, or the body's userId is not its subject",
        "E2007": "the approval request belongs to another tenant",
    },
    404: {"E1004": "no such route, session or approval request, or not the caller's"},
    405: {"E1002": "the path exists, the method does not (the Allow header lists the methods)"},
    408: {"E1001": "the request head or body did not arrive in time (AURA_HTTP_*_TIMEOUT_SECONDS)"},
    413: {"E4000": "the body is over its limit (512 KiB; 64 KiB on the approval API), the prompt over "
          f"{MAX_PROMPT_CHARS} characters, or the context over 256 KiB"},
    429: {"E1005": "a per-user or per-tenant limit of live sessions, kept sessions or open streams "
          "(Aura's own code: the DWP codes have none for 429, DECISIONS #50); see Retry-After"},
    431: {"E1001": "the request line and headers are over AURA_HTTP_MAX_HEADER_BYTES"},
    500: {"E1000": "an internal error (its text is logged, not sent)"},
    503: {
        "E5000": "Redis failed or did not answer in time",
        "E1001": "the process has AURA_HTTP_MAX_CONNECTIONS open connections (Retry-After: 1)",
    },
}


def error_envelope(status: int) -> Schema:
    """The ApiResponse of an error with ``status``: its errorCode is one of :data:`ERROR_CODES`."""
    codes = ERROR_CODES[status]
    return _closed(
        {
            "status": {"const": "ERROR"},
            "message": _TEXT,
            "errorCode": {
                "type": "string",
                "enum": list(codes),
                "description": "; ".join(f"{code}: {meaning}" for code, meaning in codes.items()),
            },
            "timestamp": ref("LocalDateTime"),
            "success": {"const": False},
            "traceId": {"type": "string", "description": "the request's X-Trace-Id, echoed"},
            "gatewayRequestId": {"type": "string", "description": "the request's X-Gateway-Request-Id, echoed"},
        },
        optional=("traceId", "gatewayRequestId"),
        description=f"CONTRACT §2.6: the error envelope of an HTTP {status}; nulls are left out.",
    )


def success_envelope(data: Schema | None, description: str, *, data_required: bool = True) -> Schema:
    """The ApiResponse of a success, whose ``data`` is ``data`` (none when ``data`` is None)."""
    properties: dict[str, Schema] = {"status": {"const": "SUCCESS"}, "message": _TEXT}
    if data is not None:
        properties["data"] = data
    properties |= {"timestamp": ref("LocalDateTime"), "success": {"const": True}}
    optional = () if data is None or data_required else ("data",)
    return _closed(properties, optional=optional, description=description)


# -- the SSE events (CONTRACT §3.3-3.5, docs/EVENTS.md) -----------------------------------------
def _event(type_: EventType, data: Schema, description: str) -> Schema:
    """The nested envelope of CONTRACT §3.4: the dispatch key in ``type``, every field in ``data``."""
    return _closed(
        {
            "type": {"const": type_.value},
            "version": {"const": PAYLOAD_VERSION},
            "eventId": ref("EventId"),
            "timestamp": _UNIX_SECONDS,
            "data": data,
        },
        description=description,
    )


_TOOL_CALL_PROPERTIES: Final[dict[str, Schema]] = {
    "tool": _TEXT,
    "params": {"type": "object", "description": "the tool's parameters, as checked against its schema"},
    "stepId": _TEXT,
    "status": _TEXT,  # narrowed by each event
    "result": {"type": "string", "maxLength": MAX_RESULT_CHARS + 3, "description": "clipped, then `...`"},
    "error": {"type": "string", "maxLength": MAX_RESULT_CHARS + 3},
}
# completed carries its result, failed its error, executing neither.
_TOOL_CALL_OUTCOME: Final[list[Schema]] = [
    {"if": {"properties": {"status": {"const": "completed"}}},
     "then": {"required": ["result"], "not": {"required": ["error"]}}},
    {"if": {"properties": {"status": {"const": "failed"}}},
     "then": {"required": ["error"], "not": {"required": ["result"]}}},
    {"if": {"properties": {"status": {"const": "executing"}}},
     "then": {"not": {"anyOf": [{"required": ["result"]}, {"required": ["error"]}]}}},
]


def _tool_call(statuses: list[str], description: str) -> Schema:
    properties = {**_TOOL_CALL_PROPERTIES, "status": _enum(statuses)}
    return _closed(properties, optional=("result", "error"), allOf=_TOOL_CALL_OUTCOME, description=description)


_HITL_PROPERTIES: Final[dict[str, Schema]] = {
    "requestId": {"type": "string", "pattern": REQUEST_ID_PATTERN,
                  "description": "for /aura/hitl/approve|reject/{requestId}; never starts with `hitl-`"},
    "sessionId": ref("SessionId"),
    "actionType": {"type": "string", "description": "the tool"},
    "action": {"type": "string", "description": "the tool, again (the frontend reads both)"},
    "message": _TEXT,
    "params": _OBJECT,
    "context": {"type": "object", "description": "the params, again (the integration guide's name)"},
    "requiresApproval": {"const": True},
    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    "editableContent": _TEXT,
    "stepId": _TEXT,
    "timeoutSeconds": {"type": "number", "description": "how long the session waits (AURA_HITL_TIMEOUT_SECONDS)"},
}

_RESULTS: Final[dict[str, Schema]] = {
    "TextResult": _closed({
        "type": {"const": "text"},
        "title": {"type": "string", "maxLength": TITLE_CHARS},
        "content": {"type": "string", "maxLength": RESULT_CHARS},
    }, description="one completed tool call: what it returned"),
    "PreviewResult": _closed({
        "type": {"const": "preview"},
        "title": {"type": "string", "maxLength": TITLE_CHARS},
        "content": {"type": ["object", "array"], "description": "the JSON the call returned, parsed"},
    }, description="one completed tool call that returned a JSON object or array of at most 1000 characters"),
    "ChecklistResult": _closed({
        "type": {"const": "checklist"},
        "title": _TEXT,
        "content": {
            "type": "array",
            "maxItems": MAX_ITEMS + 1,
            "items": _closed({"label": _TEXT, "checked": _BOOLEAN}),
        },
    }, description="several calls, or one that failed or was not run; checked when it completed"),
}


def _error_kinds() -> list[Schema]:
    """Each `error` event's errorType with its code (aura/errors.py, SessionErrorKind)."""
    kinds = [kind for kind in vars(errors).values() if isinstance(kind, errors.SessionErrorKind)]
    return [{"properties": {"errorType": {"const": kind.error_type}, "code": {"const": kind.code}}} for kind in kinds]


_EVENT_DATA: Final[dict[EventType, tuple[str, Schema, str]]] = {
    EventType.THOUGHT: ("ThoughtData", _closed({
        "content": _TEXT,
        "thoughtType": _enum(["analysis", "planning"]),
        "timestamp": _UNIX_SECONDS,
    }), "the planner's reasoning"),
    EventType.THOUGHT_CHAIN: ("ThoughtChainData", _closed({
        "type": _enum(["analysis", "planning"], "the thought's thoughtType"),
        "content": _TEXT,
        "timestamp": _UNIX_SECONDS,
    }), "after each `thought`, and once with the plan as a list: the AI-workspace page's name (DECISIONS #54)"),
    EventType.PLAN_STEP: ("PlanStepData", _closed({
        "id": _TEXT,
        "title": _TEXT,
        "description": _TEXT,
        "order": {"type": "integer", "minimum": 0},
        "status": {"const": "pending"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "canSkip": _BOOLEAN,
        "tool": _TEXT,
    }, optional=("tool",)), "one per step of the plan"),
    EventType.PLAN_STEP_UPDATE: ("PlanStepUpdateData", _closed({
        "id": _TEXT,
        "status": _enum(["executing", "approved", "completed", "failed", "skipped"]),
    }), "a step moved"),
    EventType.TOOL_EXECUTION: ("ToolExecutionData", _tool_call(
        ["executing", "completed", "failed"], "executing, then completed with its result or failed with its error"),
        "around every tool call"),
    EventType.ACTION_EXECUTION: ("ActionExecutionData", _tool_call(
        ["completed", "failed"], "the fields of the `tool_execution` that ended the call; never executing"),
        "one per tool call, when it ended: the AI-workspace page's tool card (DECISIONS #54)"),
    EventType.HITL: ("HitlData", _closed(_HITL_PROPERTIES), "before a tool that needs approval; the session waits"),
    EventType.HITL_REQUEST: ("HitlRequestData", _closed({
        "id": {"type": "string", "pattern": REQUEST_ID_PATTERN, "description": "the requestId"},
        **_HITL_PROPERTIES,
    }), "right after `hitl`, with the same fields and `id`: the AI-workspace page's approval dialog"),
    EventType.CONTENT: ("ContentData", _closed({
        "content": {"type": "string", "maxLength": MAX_CONTENT_CHARS, "description": "append the pieces"},
        "format": {"const": "markdown"},
        "metadata": _closed({"result": ref("Result")}),
    }, optional=("metadata",)), "a piece of the answer, or the explanation before an `error`; the last one of a "
       "session in which a tool ran carries metadata.result"),
    EventType.STATE: ("StateData", _closed({
        "sessionId": ref("SessionId"),
        "from": _enum(_STATES),
        "to": _enum(_STATES),
        "trigger": _enum([trigger.value for trigger in Trigger]),
        "reason": _enum(_ABORT_REASONS, "why, when `to` is aborted"),
    }, optional=("reason",)), "every state-machine transition (Aura's own; clients may ignore it)"),
    EventType.ERROR: ("ErrorData", _closed({
        "message": _TEXT,
        "error": {"type": "string", "description": "the message, again"},
        "errorType": _TEXT,
        "code": {"type": "string", "pattern": r"^E[0-9]{4}$"},
        "sessionId": ref("SessionId"),
        "reason": {"enum": [*_ABORT_REASONS, None], "description": "null when the session did not abort here"},
    }, optional=("sessionId", "reason"), oneOf=_error_kinds(),
       dependentRequired={"sessionId": ["reason"], "reason": ["sessionId"]}),
       "the session aborted (or, in compat mode, no token): always the last event before [DONE]"),
    EventType.SNAPSHOT: ("SnapshotData", {
        "oneOf": [ref("SessionView"), {"type": "object", "maxProperties": 0, "description": "unreadable snapshot"}],
    }, "instead of the events a cursor older than the bounded log missed (AURA_SESSION_MAX_EVENTS)"),
}


def _event_name(type_: EventType) -> str:
    return "".join(part.capitalize() for part in type_.value.split("_")) + "Event"


EVENT_SCHEMAS: Final[dict[str, str]] = {type_.value: _event_name(type_) for type_ in _EVENT_DATA}

# -- the session's public view (aura/session/snapshot.py, public_view) -------------------------
_NULLABLE_TEXT: Final[Schema] = {"type": ["string", "null"]}
_NULLABLE_NUMBER: Final[Schema] = {"type": ["number", "null"]}

_PLAN_VIEW: Final[Schema] = _closed({
    "thought": _TEXT,
    "steps": {"type": "array", "items": _closed({
        "id": _TEXT,
        "title": _TEXT,
        "description": _TEXT,
        "tool": _NULLABLE_TEXT,
        "params": _OBJECT,
        "confidence": _NUMBER,
        "callId": _NULLABLE_TEXT,
        "invalid": {"type": ["string", "null"], "description": "why the planner's call cannot run"},
    })},
}, description="the plan, without the model conversation")

_SESSION_VIEW: Final[Schema] = _closed({
    "sessionId": ref("SessionId"),
    "tenantId": _TEXT,
    "userId": _TEXT,
    "agentId": _NULLABLE_TEXT,
    "prompt": _TEXT,
    "context": {"type": "object", "description": "the request's context; {} once the session ended"},
    "createdAt": {"type": "number", "description": "Unix time in seconds"},
    "state": _enum(_STATES),
    "seq": {"type": "integer", "minimum": 0, "description": "the last event's seq"},
    "step": {"type": "integer", "minimum": 0, "description": "the index of the next step"},
    "pendingRequestId": {"type": ["string", "null"], "description": "the approval request it waits for"},
    "approvalDeadline": _NULLABLE_NUMBER,
    "toolStarted": {"type": ["string", "null"], "description": "the step whose tool started and has not reported"},
    "answeredChars": {"type": "integer", "minimum": 0},
    "abortReason": {"enum": [*_ABORT_REASONS, None]},
    "abortDetail": _NULLABLE_TEXT,
    "updatedAt": _NULLABLE_NUMBER,
    "plan": {"oneOf": [ref("PlanView"), {"type": "null"}]},
    "outcomes": {"type": ["object", "null"], "additionalProperties": _NULLABLE_TEXT,
                 "description": "each step's tool result by step id"},
    "cancelRequested": _BOOLEAN,
}, description="A session as its owner may see it: no credential, no model conversation.")

# -- everything else ----------------------------------------------------------------------------
_HEALTH_CHECK: Final[Schema] = _closed({"status": _enum(["UP", "DOWN"])})

SCHEMAS: Final[dict[str, Schema]] = {
    "LocalDateTime": {
        "type": "string",
        "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?$",
        "description": "Java's LocalDateTime: ISO-8601 local time, no offset (CONTRACT §2.6)",
        "examples": ["2026-01-16T12:00:00.123456"],
    },
    "SessionId": {"type": "string", "pattern": SESSION_ID_PATTERN, "examples": ["sess_3f0c9b2a7d1e4c5b6a7f8e9d"]},
    "EventId": {
        "type": "string",
        "pattern": EVENT_ID_PATTERN,
        "description": "`{sessionId}.{seq}`, as on the frame's id: line (CONTRACT §3.6)",
        "examples": ["sess_3f0c9b2a7d1e4c5b6a7f8e9d.12"],
    },
    **{f"Error{status}": error_envelope(status) for status in ERROR_CODES},
    "StreamRequest": {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS, "pattern": r"\S",
                       "description": "the user's text; not blank"},
            "context": {
                "type": ["object", "null"],
                "maxProperties": MAX_CONTEXT_KEYS,
                "description": f"an open object (CONTRACT §3.1): at most {MAX_CONTEXT_KEYS} keys, "
                f"{MAX_CONTEXT_DEPTH} levels and 256 KiB; `language` (e.g. ko-KR) picks the language of Aura's "
                "own texts when the prompt has no letters",
                "examples": [{"activeApp": "mail", "path": "/mail/inbox", "language": "ko-KR"}],
            },
        },
        "description": "CONTRACT §3.1; other keys are ignored.",
    },
    "DecisionRequest": {
        "type": "object",
        "required": ["userId"],
        "properties": {
            "userId": {"type": "string", "pattern": r"\S", "description": "must be the token's subject (DECISIONS #41)"},
            "reason": {"type": "string", "description": "kept with a rejection and shown to the user"},
        },
        "description": "CONTRACT §4.4: main-service's body.",
    },
    "DecisionData": _closed({
        "requestId": _TEXT,
        "sessionId": _TEXT,
        "status": _enum(["approved", "rejected"], "the request's status now (on a 409: the earlier decision)"),
        "reason": {"type": "string", "description": "a rejection's reason, when it has one"},
    }, optional=("reason",)),
    "DecisionEnvelope": success_envelope(ref("DecisionData"), "CONTRACT §4.4: 200, or 409 with the same envelope "
                                         "(`success: true`) when the request was already decided"),
    "StoredJsonEnvelope": success_envelope(
        {"type": "string", "contentMediaType": "application/json",
         "description": "the stored JSON as a string, as main-service answers (CONTRACT §4.2-4.4)"},
        "the record, to its own tenant only", data_required=False),
    "SessionView": _SESSION_VIEW,
    "PlanView": _PLAN_VIEW,
    "SessionEnvelope": success_envelope(ref("SessionView"), "the session's snapshot, to its owner"),
    "CancelEnvelope": success_envelope(_closed({"sessionId": ref("SessionId"), "status": {"const": "cancelling"}}),
                                       "accepted: whichever replica drives the session aborts it"),
    "SessionSummary": _closed({
        "sessionId": ref("SessionId"),
        "userId": {"type": "string", "description": "the session's owner"},
        "state": _enum([state.value for state in State if state not in FINAL_STATES], "a live state"),
        "createdAt": {"type": ["number", "null"], "description": "Unix seconds"},
        "updatedAt": {"type": ["number", "null"], "description": "Unix seconds of its last write"},
        "pendingRequestId": {"type": ["string", "null"], "description": "the approval it waits for"},
        "own": {"type": "boolean", "description": "the caller's own session"},
        "prompt": {"type": "string", "maxLength": 200, "description": "its prompt, on the caller's own only"},
    }, optional=("prompt",)),
    "SessionListEnvelope": success_envelope(_closed({
        "sessions": {"type": "array", "items": ref("SessionSummary"), "description": "newest first"},
        "total": {"type": "integer", "minimum": 0, "description": "the tenant's live sessions in all"},
        "limit": {"type": "integer", "minimum": 1, "description": "at most this many are listed"},
    }), "the caller's tenant's live sessions (DECISIONS #70)"),
    "MachineDefinition": _closed({
        "initial": {"const": State.PLANNING.value},
        "states": {"type": "array", "items": _closed({"name": _enum([state.value for state in State]),
                                                       "final": {"type": "boolean"}})},
        "transitions": {"type": "array", "items": _closed({
            "trigger": _enum([trigger.value for trigger in Trigger]),
            "sources": {"type": "array", "items": _enum([state.value for state in State])},
            "dest": _enum([state.value for state in State]),
            "conditions": {"type": "array", "items": {"type": "string"}},
        })},
    }, description="statemachines.describe(): the session machine as data, which the console draws"),
    "DevTokenRequest": _closed({
        "userId": {"type": "string", "pattern": "^[0-9]{1,18}$", "description": "default \"1\""},
        "tenantId": {"type": "string", "pattern": "^[0-9]{1,18}$", "description": "default \"1\""},
    }, optional=("userId", "tenantId")),
    "DevTokenEnvelope": success_envelope(_closed({
        "token": {"type": "string", "description": "an HS256 JWT signed with the public dev secret"},
        "userId": {"type": "string"},
        "tenantId": {"type": "string"},
        "expiresAt": {"type": "integer", "description": "Unix seconds"},
    }), "a development token (DECISIONS #69)"),
    "Health": _closed({
        "status": _enum(["UP", "DEGRADED"]),
        "service": {"const": SERVICE_NAME},
        "checks": _closed({
            "redis": _closed({"status": _enum(["UP", "DOWN"]),
                              "mode": _enum(["embedded", "standalone", "sentinel", "cluster"])}),
            "heartbeat": _HEALTH_CHECK,
            "hitlSubscriber": _HEALTH_CHECK,
        }),
        "sessions": _closed({
            "live": _INTEGER, "awaitingApproval": _INTEGER, "driven": _INTEGER, "started": _INTEGER,
        }, description="this process's sessions: only for a caller with a valid token for its X-Tenant-ID"),
    }, optional=("sessions",), description="Readiness; not an ApiResponse."),
    "Liveness": _closed({"status": {"const": "UP"}, "service": {"const": SERVICE_NAME}}),
    "Info": _closed({
        "status": {"const": "UP"},
        "service": {"const": SERVICE_NAME},
        "version": _TEXT,
        "stream": _closed({"path": _TEXT, "methods": {"type": "array", "items": _TEXT},
                           "auth": _enum(["strict", "compat"], "AURA_STREAM_AUTH")}),
        "hitl": _closed({"timeoutSeconds": _NUMBER, "heartbeatSeconds": _NUMBER}),
        "redis": _closed({"mode": _TEXT}),
        "tools": {"type": "array", "items": _TEXT},
    }),
    "OpenApiDocument": {"type": "object", "required": ["openapi", "info", "paths"],
                        "properties": {"openapi": {"const": "3.1.0"}}},
    "Result": {
        "oneOf": [ref(name) for name in _RESULTS],
        "discriminator": {"propertyName": "type", "mapping": {
            schema["properties"]["type"]["const"]: SCHEMA_PREFIX + name for name, schema in _RESULTS.items()
        }},
        "description": "metadata.result (CONTRACT §3.5; docs/EVENTS.md, Results); never diff",
    },
    **_RESULTS,
    "StreamEvent": {
        "oneOf": [ref(name) for name in EVENT_SCHEMAS.values()],
        "discriminator": {"propertyName": "type",
                          "mapping": {type_: SCHEMA_PREFIX + name for type_, name in EVENT_SCHEMAS.items()}},
        "description": "the JSON of one frame's data: line, ASCII-only (CONTRACT §3.3-3.4)",
    },
    **{_event_name(type_): _event(type_, ref(data_name), when) for type_, (data_name, _, when) in _EVENT_DATA.items()},
    **{data_name: data for data_name, data, _ in _EVENT_DATA.values()},
}

# X-Agent-ID (CONTRACT §2.3, DECISIONS #51)
AGENT_ID: Final[Schema] = {"type": "string", "maxLength": MAX_AGENT_ID_CHARS, "pattern": r"^[A-Za-z0-9._:-]+$"}
