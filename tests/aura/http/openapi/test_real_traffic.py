"""The API description against real traffic: every frame of real sessions and every answer of a real
uvicorn over a real redis-server is what the document it serves says (its event schemas, its
responses, their media types, headers and bodies)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from aura.config import StreamAuthPolicy
from tests.conftest import open_stream
from tests.support.auth import approver_headers, auth_headers, make_token
from tests.support.live_server import LiveServer
from tests.support.llm import LLM, text_stream
from tests.support.openapi import ApiDescription
from tests.support.sse import Frame, SseStream

pytestmark = pytest.mark.anyio

EMAIL = "Send an email to kim@example.com saying the release is ready"  # waits for approval
KOREAN_EMAIL = "kim@example.com 에게 회의 일정 메일 보내줘"


async def served_description(client: httpx.AsyncClient) -> ApiDescription:
    """The document as the server serves it, to a caller without any credential."""
    response = await client.get("/aura/openapi.json")
    assert response.status_code == 200, response.text
    document = response.json()
    validate(document, cls=OpenAPIV31SpecValidator)
    description = ApiDescription(document)
    description.check_response(response)
    return description


@pytest.fixture
async def description(client: httpx.AsyncClient) -> ApiDescription:
    return await served_description(client)


def checked_frames(description: ApiDescription, stream: SseStream) -> set[str]:
    """Checks the stream's response and every event frame read from it; the types seen."""
    description.check_response(stream.response, body=False)
    assert stream.frames and stream.frames[-1].is_done, stream.types
    return {description.check_event(frame.payload) for frame in stream.frames if frame.payload}


async def checked(description: ApiDescription, response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    description.check_response(response)
    body: dict[str, Any] = response.json()
    return body


async def test_every_frame_and_answer_of_real_sessions_matches_the_document(
    client: httpx.AsyncClient, description: ApiDescription
) -> None:
    tenant = "131"
    caller, approver = auth_headers("1", tenant), approver_headers("1", tenant)
    seen: set[str] = set()

    async with open_stream(client, "hello there", headers=caller) as stream:
        await stream.rest()
    seen |= checked_frames(description, stream)
    async with open_stream(client, "Summarize my open tasks for today", headers=caller) as stream:
        await stream.rest()
    seen |= checked_frames(description, stream)

    # Approved: the tool runs, the answer carries its result; a repeat is 409.
    async with open_stream(client, EMAIL, headers=caller) as stream:
        hitl = await stream.until("hitl")
        sid, rid = hitl.session_id, hitl.body["requestId"]
        view = await checked(description, await client.get(f"/aura/sessions/{sid}", headers=caller), 200)
        assert view["data"]["state"] == "awaiting_approval" and view["data"]["pendingRequestId"] == rid
        stored = await checked(description, await client.get(f"/aura/hitl/requests/{rid}", headers=approver), 200)
        assert json.loads(stored["data"])["requestId"] == rid
        other_tenant = await client.post(f"/aura/hitl/approve/{rid}", json={"userId": "1"},
                                         headers=approver_headers("1", "132"))
        assert (await checked(description, other_tenant, 403))["errorCode"] == "E2007"
        approved = await client.post(f"/aura/hitl/approve/{rid}", json={"userId": "1"}, headers=approver)
        assert (await checked(description, approved, 200))["data"]["status"] == "approved"
        await stream.rest()
    seen |= checked_frames(description, stream)
    again = await client.post(f"/aura/hitl/approve/{rid}", json={"userId": "1"}, headers=approver)
    await checked(description, again, 409)
    signal = await checked(description, await client.get(f"/aura/hitl/signals/{sid}", headers=approver), 200)
    assert json.loads(signal["data"])["requestId"] == rid
    none = await client.get("/aura/hitl/signals/sess_000000000000000000000000", headers=approver)
    assert "data" not in await checked(description, none, 200)
    done = await checked(description, await client.get(f"/aura/sessions/{sid}", headers=caller), 200)
    assert done["data"]["state"] == "done" and done["data"]["plan"] is not None

    # Its log again, after a cursor.
    async with client.stream("GET", f"/aura/sessions/{sid}/events", params={"after": "3"}, headers=caller) as response:
        assert response.status_code == 200
        replay = SseStream(response)
        await replay.rest()
    seen |= checked_frames(description, replay)

    # Rejected with a reason, in Korean: the explanation, a checklist result, the error.
    async with open_stream(client, KOREAN_EMAIL, headers=caller) as stream:
        rid = (await stream.until("hitl")).body["requestId"]
        rejected = await client.post(f"/aura/hitl/reject/{rid}", json={"userId": "1", "reason": "사용자가 거부했습니다."},
                                     headers=approver)
        assert (await checked(description, rejected, 200))["data"]["reason"] == "사용자가 거부했습니다."
        await stream.rest()
    seen |= checked_frames(description, stream)

    # Cancelled while it waits; a second cancel is refused.
    async with open_stream(client, EMAIL, headers=caller) as stream:
        sid = (await stream.until("hitl")).session_id
        await checked(description, await client.post(f"/aura/sessions/{sid}/cancel", headers=caller), 202)
        await stream.rest()
    seen |= checked_frames(description, stream)
    refused = await client.post(f"/aura/sessions/{sid}/cancel", headers=caller)
    assert (await checked(description, refused, 400))["errorCode"] == "E3002"

    error_types = {f.body["errorType"] for f in stream.frames if f.type == "error"}
    assert error_types == {"CancelledError"}
    all_types = set(description.document["components"]["schemas"]["StreamEvent"]["discriminator"]["mapping"])
    assert all_types - seen == {"snapshot"}  # the next test has one


async def test_a_snapshot_frame_of_a_long_session_matches_the_document(
    start_server: Callable[..., LiveServer], mocked: respx.MockRouter
) -> None:
    """A cursor older than the bounded log gets a `snapshot` event first: a model's long answer makes one."""
    server = start_server(session_max_events=100, llm_base_url="https://llm.test/v1", llm_model="m",
                          llm_max_retries=0, llm_timeout_seconds=5)
    mocked.post(LLM).mock(return_value=text_stream("A long answer. " * 4000, reasoning="Thinking it over."))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        description = await served_description(client)
        caller = auth_headers("1", "133")
        async with open_stream(client, "Tell me a long story", headers=caller) as stream:
            await stream.rest(timeout=30)
        checked_frames(description, stream)
        sid = stream.frames[0].session_id
        headers = {**caller, "Last-Event-ID": f"{sid}.1"}
        async with client.stream("GET", f"/aura/sessions/{sid}/events", headers=headers) as response:
            assert response.status_code == 200
            replay = SseStream(response)
            await replay.rest()
        assert replay.frames[0].type == "snapshot" and replay.frames[0].body["state"] == "done"
        assert checked_frames(description, replay) == {"snapshot", "content", "state"}
        await checked(description, await client.get(f"/aura/sessions/{sid}", headers=caller), 200)


async def test_the_compat_modes_frame_without_a_token_matches_the_document(
    start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(stream_auth=StreamAuthPolicy.COMPAT)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        description = await served_description(client)
        async with open_stream(client, "hi", headers={"X-Tenant-ID": "1"}) as stream:
            await stream.rest()
        assert checked_frames(description, stream) == {"error"}
        info = await checked(description, await client.get("/aura/info"), 200)
        assert info["stream"]["auth"] == "compat"


def _request(method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Callable[
        [httpx.AsyncClient], Any]:
    return lambda client: client.request(method, path, headers=headers, **kwargs)


NO_SESSION = "sess_000000000000000000000000"
STREAM = "/aura/test/stream"
JSON_BODY = {"prompt": "hi"}


@pytest.mark.parametrize(("request_", "status", "code"), [
    (_request("POST", STREAM, {"X-Tenant-ID": "1"}, json=JSON_BODY), 401, "E2000"),
    (_request("POST", STREAM, {"Authorization": f"Bearer {make_token(lifetime=-60)}", "X-Tenant-ID": "1"},
              json=JSON_BODY), 401, "E2002"),
    (_request("POST", STREAM, {"Authorization": "Bearer not.a.token", "X-Tenant-ID": "1"}, json=JSON_BODY), 401, "E2003"),
    (_request("POST", STREAM, {"Authorization": f"Bearer {make_token()}"}, json=JSON_BODY), 400, "E2006"),
    (_request("POST", STREAM, auth_headers("1", "1") | {"X-Tenant-ID": "2"}, json=JSON_BODY), 403, "E2001"),
    (_request("POST", STREAM, auth_headers(), content=b""), 400, "E4001"),
    (_request("POST", STREAM, auth_headers(), content=b"[1]"), 400, "E4002"),
    (_request("POST", STREAM, auth_headers(), json={"prompt": "  "}), 400, "E4000"),
    (_request("POST", STREAM, auth_headers(), json={"prompt": "x" * 32_001}), 413, "E4000"),
    (_request("POST", STREAM, auth_headers("1", "1", **{"X-Agent-ID": "a/b"}), json=JSON_BODY), 400, "E4000"),
    (_request("GET", f"/aura/sessions/{NO_SESSION}", auth_headers()), 404, "E1004"),
    (_request("GET", f"/aura/sessions/{NO_SESSION}/events", auth_headers()), 404, "E1004"),
    (_request("POST", f"/aura/sessions/{NO_SESSION}/cancel", auth_headers()), 404, "E1004"),
    (_request("POST", "/aura/hitl/approve/req_x", auth_headers(), json={"userId": "1"}), 401, "E2000"),
    (_request("POST", "/aura/hitl/approve/req_x", approver_headers(), json={"userId": "2"}), 403, "E2001"),
    (_request("POST", "/aura/hitl/approve/req_x", approver_headers(), json={"userId": " "}), 400, "E4000"),
    (_request("POST", "/aura/hitl/reject/req_x", approver_headers(), json={"userId": "1"}), 404, "E1004"),
    (_request("POST", "/aura/hitl/reject/req_x", approver_headers("1", "t1"), json={"userId": "1"}), 400, "E1001"),
    (_request("GET", "/aura/hitl/requests/req_x", approver_headers()), 404, "E1004"),
    (_request("GET", "/aura/hitl/signals/sess_x", auth_headers()), 401, "E2000"),
], ids=lambda value: "" if callable(value) else str(value))
async def test_every_refusal_is_an_error_the_document_describes(
    client: httpx.AsyncClient, description: ApiDescription, request_: Callable[[httpx.AsyncClient], Any],
    status: int, code: str
) -> None:
    response = await request_(client)
    assert (await checked(description, response, status))["errorCode"] == code


@pytest.mark.parametrize(("path", "headers"), [
    ("/aura/health", {}),
    ("/aura/health", auth_headers()),
    ("/aura/agents/health", auth_headers()),
    ("/aura/info", {}),
    ("/health", {}),
])
async def test_the_public_answers_match_the_document(
    client: httpx.AsyncClient, description: ApiDescription, path: str, headers: dict[str, str]
) -> None:
    body = await checked(description, await client.get(path, headers=headers), 200)
    assert ("sessions" in body) == (path.endswith("health") and path != "/health" and bool(headers))


async def test_a_limited_stream_is_a_429_the_document_describes(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(max_streams_per_user=1)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        description = await served_description(client)
        caller = auth_headers("1", "134")
        async with open_stream(client, EMAIL, headers=caller) as stream:
            frame: Frame = await stream.until("hitl")
            refused = await client.post(STREAM, json=JSON_BODY, headers=caller)
            assert (await checked(description, refused, 429))["errorCode"] == "E1005"
            await checked(description, await client.post(f"/aura/sessions/{frame.session_id}/cancel",
                                                         headers=caller), 202)
            await stream.rest()
        checked_frames(description, stream)


async def test_the_console_the_session_list_and_the_metrics_match_the_document(
    client: httpx.AsyncClient, description: ApiDescription
) -> None:
    tenant = "133"
    caller = auth_headers("1", tenant)
    for path in ("/aura/console", "/aura/console/machine.json", "/aura/console/static/console.js",
                 "/aura/console/static/console.css", "/metrics"):
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text)
        description.check_response(response)
    description.check_response(await client.get("/aura/console/static/nothing.js"))
    async with open_stream(client, EMAIL, headers=caller) as stream:
        await stream.until("hitl")
        listed = await checked(description, await client.get("/aura/sessions", headers=caller), 200)
        assert [s["state"] for s in listed["data"]["sessions"]] == ["awaiting_approval"]
        other = await checked(description, await client.get("/aura/sessions", headers=auth_headers("2", tenant)), 200)
        assert "prompt" not in other["data"]["sessions"][0]  # another user's prompt is not shown
        await client.post(f"/aura/sessions/{stream.frames[0].session_id}/cancel", headers=caller)
        await stream.rest()
    await checked(description, await client.get("/aura/sessions", headers={"X-Tenant-ID": tenant}), 401)


async def test_the_dev_token_route_matches_the_document_on_the_dev_secret(
    start_server: Callable[..., LiveServer],
) -> None:
    from aura.config import DEV_JWT_SECRET

    server = start_server(jwt_secret=DEV_JWT_SECRET, allow_dev_secret=True)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        description = await served_description(client)
        minted = await checked(description, await client.post("/aura/console/dev-token", json={"userId": "7"}), 200)
        assert minted["data"]["userId"] == "7" and minted["data"]["tenantId"] == "1"
        await checked(description, await client.post("/aura/console/dev-token", json={"userId": "x"}), 400)
