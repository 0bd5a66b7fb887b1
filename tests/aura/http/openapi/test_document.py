"""The API description without a server: a valid OpenAPI 3.1 document that describes exactly the app's
routes, every event type and error code Aura has, and the payloads the event builders make."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from statemachines import AbortReason, State, Transition, Trigger

from aura import errors
from aura.config import DEV_JWT_SECRET, Settings
from aura.http import create_app
from aura.http.openapi import build_document, drift
from aura.http.openapi.document import routed_operations
from aura.http.openapi.operations import OPERATIONS, OPTIONAL
from aura.http.openapi.schemas import ERROR_CODES, EVENT_SCHEMAS
from aura.http.stream import unauthenticated_frame
from aura.ids import EventId, new_request_id, new_session_id
from aura.session import events
from aura.session.events import EventType
from aura.session.plan import PlanStep
from aura.session.snapshot import Snapshot, public_view
from tests.support.auth import SECRET
from tests.support.openapi import ApiDescription

AURA = Path(__file__).resolve().parents[4] / "aura"


def _app(settings: Settings) -> Iterator[Starlette]:
    app = create_app(settings)
    yield app
    services = app.state.runtime.services
    asyncio.run(_close(services.http, services.redis))


@pytest.fixture(scope="module")
def app() -> Iterator[Starlette]:
    """The app as create_app builds it with every route on (the dev secret: its dev-token route too; no
    lifespan, so no Redis is touched)."""
    yield from _app(Settings(jwt_secret=DEV_JWT_SECRET, allow_dev_secret=True))


@pytest.fixture(scope="module")
def lean_app() -> Iterator[Starlette]:
    """The app with its optional routes off: no metrics, not on the dev secret."""
    yield from _app(Settings(jwt_secret=SECRET, metrics=False))


async def _close(http: httpx.AsyncClient, redis: Any) -> None:
    await http.aclose()
    await redis.aclose()


@pytest.fixture(scope="module")
def description(app: Starlette) -> ApiDescription:
    return ApiDescription(build_document(app.routes))


async def endpoint(request: Any) -> Response:
    return PlainTextResponse("")


# -- the document ------------------------------------------------------------------------------
def test_the_document_is_valid_openapi_3_1(description: ApiDescription) -> None:
    validate(description.document, cls=OpenAPIV31SpecValidator)
    assert description.document["openapi"] == "3.1.0"


def test_every_route_of_the_app_is_described_and_every_description_is_a_route(app: Starlette) -> None:
    assert drift(app.routes) == []


def test_optional_routes_that_are_off_are_no_drift_and_not_in_the_document(lean_app: Starlette) -> None:
    assert drift(lean_app.routes) == []
    paths = build_document(lean_app.routes)["paths"]
    assert "/metrics" not in paths and "/aura/console/dev-token" not in paths
    assert {key for key in OPTIONAL if key[1] in paths} == set()


def test_every_route_and_method_of_the_app_is_in_the_document(app: Starlette, description: ApiDescription) -> None:
    paths = description.document["paths"]
    routed = list(routed_operations(app.routes))
    for operation in routed:
        assert operation.method.lower() in paths[operation.path], f"{operation.method} {operation.path}"
    assert sum(len(item) for item in paths.values()) == len(OPERATIONS) == len(routed)


def test_a_route_without_a_description_is_named_with_where_to_add_it(app: Starlette, tmp_path: Path) -> None:
    added: list[BaseRoute] = [
        Route("/aura/examples", endpoint, methods=["GET"]),
        Route("/aura/sessions", endpoint, methods=["DELETE"]),
        Route("/aura/examples/files/{path:path}", endpoint),
        Mount("/aura/examples/assets", app=StaticFiles(directory=tmp_path)),
    ]
    problems = drift([*app.routes, *added])
    table = "add ('GET', '/aura/examples') to OPERATIONS in aura/http/openapi/operations.py"
    assert problems == [
        f"GET /aura/examples (route '/aura/examples') has no description: {table}",
        "DELETE /aura/sessions (route '/aura/sessions') has no description: add ('DELETE', '/aura/sessions') to "
        "OPERATIONS in aura/http/openapi/operations.py",
        "GET /aura/examples/files/{path} (route '/aura/examples/files/{path:path}') has no description: add "
        "('GET', '/aura/examples/files/{path}') to OPERATIONS in aura/http/openapi/operations.py",
        "GET /aura/examples/assets/{path} (route '/aura/examples/assets/{path:path}') has no description: add "
        "('GET', '/aura/examples/assets/{path}') to OPERATIONS in aura/http/openapi/operations.py",
    ]
    # Served all the same: the document leaves out what it cannot describe, and stays valid.
    document = build_document([*app.routes, *added])
    assert "/aura/examples" not in document["paths"] and "delete" not in document["paths"]["/aura/sessions"]
    validate(document, cls=OpenAPIV31SpecValidator)


def test_a_description_without_a_route_is_named(app: Starlette) -> None:
    without = [r for r in app.routes if not (isinstance(r, Route) and r.path in ("/health", "/aura/test/stream"))]
    assert drift(without) == [
        "POST /aura/test/stream is described in OPERATIONS in aura/http/openapi/operations.py, but the app has no "
        "such route",
        "GET /aura/test/stream is described in OPERATIONS in aura/http/openapi/operations.py, but the app has no "
        "such route",
        "GET /health is described in OPERATIONS in aura/http/openapi/operations.py, but the app has no such route",
    ]
    assert "/health" not in build_document(without)["paths"]


def test_a_route_of_another_kind_is_refused_by_name(app: Starlette) -> None:
    with pytest.raises(TypeError, match="WebSocketRoute '/aura/ws' cannot be described"):
        drift([*app.routes, WebSocketRoute("/aura/ws", endpoint)])


def test_a_route_with_a_parameter_gets_it_declared(description: ApiDescription) -> None:
    document = build_document([Route("/aura/examples/files/{path:path}", endpoint)])
    assert document["paths"] == {}  # undescribed: left out
    get = description.document["paths"]["/aura/sessions/{session_id}/events"]["get"]
    assert [(p["name"], p["in"]) for p in get["parameters"]] == [
        ("session_id", "path"), ("Last-Event-ID", "header"), ("after", "query")]


def test_every_operation_has_its_own_id_and_says_who_may_call_it(description: ApiDescription) -> None:
    operations = [op for item in description.document["paths"].values() for op in item.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids))
    assert all("security" in op for op in operations)
    approve = description.document["paths"]["/aura/hitl/approve/{request_id}"]["post"]
    assert approve["security"] == [{"bearerAuth": [], "tenantHeader": [], "userHeader": []}]
    stream = description.document["paths"]["/aura/test/stream"]["post"]
    assert stream["security"] == [{"bearerAuth": [], "tenantHeader": []}]
    assert description.document["paths"]["/aura/openapi.json"]["get"]["security"] == []


# -- drift against the code the document describes ---------------------------------------------
def test_every_event_type_has_a_schema() -> None:
    assert set(EVENT_SCHEMAS) == {type_.value for type_ in EventType}


def test_every_error_class_answers_with_a_code_the_document_lists() -> None:
    classes = [cls for cls in _subclasses(errors.ApiError) if cls is not errors.HttpError]
    assert classes
    for cls in classes:
        assert cls.default_error_code in ERROR_CODES[cls.status_code], cls.__name__


def test_every_error_code_in_the_source_is_listed() -> None:
    """A code written anywhere in aura/ (e.g. ``error_code="E3002"``) is an HTTP code the document lists,
    or the code of a session's `error` event."""
    listed = {code for codes in ERROR_CODES.values() for code in codes}
    session_codes = {kind.code for kind in vars(errors).values() if isinstance(kind, errors.SessionErrorKind)}
    written = {code for path in AURA.rglob("*.py") for code in re.findall(r"\bE[0-9]{4}\b", path.read_text())}
    assert written - listed - session_codes == set()
    assert "E1005" in ERROR_CODES[429]


def _subclasses(cls: type[errors.ApiError]) -> list[type[errors.ApiError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


# -- the payloads the builders make ----------------------------------------------------------
def _payloads() -> Iterator[tuple[str, dict[str, Any]]]:
    sid = new_session_id()
    step = PlanStep("step-2", "Send the email", "Send it to kim@example.com", "send_email", {"to": "kim@example.com"})
    built: list[events.EventData] = [
        events.thought("Analyzing the request...", "analysis"),
        events.thought_chain("Plan:\n1. Send the email", "planning"),
        events.plan_step(step, 1),
        events.plan_step(PlanStep("step-1", "Answer", "Compose an answer"), 0),
        events.step_status(step, "approved"),
        events.tool_execution(step, "executing"),
        events.tool_execution(step, "completed", result="x" * 5000),
        events.tool_execution(step, "failed", error="send_email failed: timed out after 30 s"),
        events.action_execution(step, "completed", result="placed in outbox"),
        events.action_execution(step, "failed", error="boom"),
        *events.hitl(step, request_id=new_request_id(), session_id=sid, tool="send_email", timeout_seconds=280),
        events.content("답장했습니다."),
        events.content("Done.", {"type": "text", "title": "Send the email", "content": "ok"}),
        events.content("Done.", {"type": "preview", "title": "Read", "content": [{"id": 1}]}),
        events.content("Done.", {"type": "checklist", "title": "Tool results",
                                 "content": [{"label": "Send: not run: rejected", "checked": False}]}),
        events.state_change(sid, Transition(State.AWAITING_APPROVAL, State.ABORTED, Trigger.REJECT), "rejected"),
        events.state_change(sid, Transition(State.PLANNING, State.EXECUTING, Trigger.START_EXECUTION), None),
        events.error(errors.REJECTED, "send_email was rejected: no", session_id=sid, reason=AbortReason.REJECTED.value),
        events.error(errors.SESSION_LOST, "gone", session_id=sid, reason=None),
        events.snapshot(public_view(Snapshot(session_id=sid, tenant_id="1", user_id="1", prompt="hi"))),
        events.snapshot({}),
    ]
    for n, (type_, data) in enumerate(built, 1):
        yield type_.value, events.envelope(str(EventId(sid, n)), type_, data)
    frame = unauthenticated_frame()
    yield "error", json.loads(frame.split(b"data: ", 1)[1])


PAYLOADS = list(_payloads())


@pytest.mark.parametrize(("type_", "payload"), PAYLOADS, ids=[f"{n}-{type_}" for n, (type_, _) in enumerate(PAYLOADS)])
def test_what_the_event_builders_make_matches_the_document(
    description: ApiDescription, type_: str, payload: dict[str, Any]
) -> None:
    assert description.check_event(payload) == type_


@pytest.mark.parametrize(("payload", "problem"), [
    ({"type": "thought", "version": "1.0", "eventId": "sess_0123456789abcdef01234567.1", "timestamp": 1,
      "data": {"content": "x", "thoughtType": "analysis", "timestamp": 1, "sources": []}}, "sources"),
    ({"type": "tool_execution", "version": "1.0", "eventId": "sess_0123456789abcdef01234567.1", "timestamp": 1,
      "data": {"tool": "t", "params": {}, "stepId": "s", "status": "completed"}}, "'result' is a required"),
    ({"type": "thought", "version": "1.0", "eventId": "event_123", "timestamp": 1,
      "data": {"content": "x", "thoughtType": "analysis", "timestamp": 1}}, "eventId"),
    ({"type": "error", "version": "1.0", "eventId": "sess_0123456789abcdef01234567.1", "timestamp": 1,
      "data": {"message": "m", "error": "m", "errorType": "RejectionError", "code": "E5000", "sessionId":
               "sess_0123456789abcdef01234567", "reason": "rejected"}}, "data"),
])
def test_an_event_the_document_does_not_describe_fails_its_schema(
    description: ApiDescription, payload: dict[str, Any], problem: str
) -> None:
    with pytest.raises(AssertionError, match=re.escape(problem)):
        description.check_event(payload)


# -- the endpoint ------------------------------------------------------------------------------
@pytest.fixture
async def in_process(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://aura.test") as client:
        yield client


@pytest.mark.anyio
async def test_the_document_is_served_without_authentication(in_process: httpx.AsyncClient, app: Starlette) -> None:
    response = await in_process.get("/aura/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == json.loads(json.dumps(build_document(app.routes)))
    again = await in_process.get("/aura/openapi.json")
    assert again.content == response.content
    ApiDescription(response.json()).check_response(response)
