"""Aura's approval API with main-service semantics (CONTRACT §2.4, §4.2-4.4).

Request records are written straight into the real Redis in the Java format (§4.2).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from tests.support.auth import approver_headers, make_token
from tests.support.envelopes import assert_error_envelope, assert_success_envelope
from tests.support.live_server import let_server_log_its_crash
from tests.support.main_service import stored_request as stored
from tests.support.main_service import stored_signal
from tests.support.redis_server import close_pubsub

pytestmark = pytest.mark.anyio

APPROVED_MESSAGE = "Request approved successfully"
REJECTED_MESSAGE = "Request rejected"
IDEMPOTENT_MESSAGE = "Request was already processed (idempotent)"
assert_success = assert_success_envelope
assert_error = assert_error_envelope


# -- helpers -------------------------------------------------------------------------------------


async def put_request(
    redis: Redis, *, tenant: Any = "1", status: Any = "pending", ttl: int = 600, **overrides: Any
) -> tuple[str, str, dict[str, Any]]:
    """SET hitl:request:{id} (and hitl:session:{sid}) as Aura/Java write them (CONTRACT §4.2)."""
    request_id = f"req_{uuid.uuid4().hex[:12]}"
    session_id = f"session_1_{uuid.uuid4().hex[:10]}"
    record: dict[str, Any] = {
        "requestId": request_id,
        "sessionId": session_id,
        "userId": "1",
        "tenantId": tenant,
        "actionType": "send_email",
        "context": {"to": "user@example.com"},
        "status": status,
        "createdAt": int(time.time() * 1000),
        "taskId": "task-123",
        "customField": {"kept": True},
    }
    record.update(overrides)
    record = {k: v for k, v in record.items() if v is not ...}
    await redis.set(f"hitl:request:{request_id}", json.dumps(record), ex=ttl)
    await redis.set(f"hitl:session:{session_id}", request_id, ex=3600)
    return request_id, session_id, record


async def approve(
    client: httpx.AsyncClient, request_id: str, body: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(
        f"/aura/hitl/approve/{request_id}",
        json={"userId": "1"} if body is None else body,
        headers=approver_headers() if headers is None else headers,
    )


async def reject(
    client: httpx.AsyncClient, request_id: str, body: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(
        f"/aura/hitl/reject/{request_id}",
        json={"userId": "1"} if body is None else body,
        headers=approver_headers() if headers is None else headers,
    )




class ChannelListener:
    """A plain Redis subscriber on hitl:channel:{sessionId}, like Aura's hub or any other replica."""

    def __init__(self, redis: Redis, session_id: str) -> None:
        self.pubsub: PubSub = redis.pubsub()
        self.channel = f"hitl:channel:{session_id}"

    async def __aenter__(self) -> ChannelListener:
        await self.pubsub.subscribe(self.channel)
        confirmation = await self.pubsub.get_message(timeout=5)  # subscribed before anything is published
        assert confirmation is not None and confirmation["type"] == "subscribe", confirmation
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pubsub.unsubscribe()
        await close_pubsub(self.pubsub)

    async def messages(self, expected: int = 0, *, quiet_seconds: float = 0.2, timeout: float = 10) -> list[str]:
        """Every message published so far: waits for ``expected`` of them (up to ``timeout`` s, so a
        slow delivery is not mistaken for none), then until the channel stays quiet for
        ``quiet_seconds``, to catch any message beyond them."""
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            wait = max(remaining, 0.01) if len(out) < expected else quiet_seconds
            message = await self.pubsub.get_message(timeout=wait)
            if message is None:
                if len(out) < expected and time.monotonic() < deadline:
                    continue
                return out
            assert message["type"] == "message" and message["channel"] == self.channel, message
            assert isinstance(message["data"], str), message
            out.append(message["data"])


Listen = Callable[[str], Awaitable[ChannelListener]]
Decide = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture
async def listen(redis: Redis) -> AsyncIterator[Listen]:
    listeners: list[ChannelListener] = []

    async def start(session_id: str) -> ChannelListener:
        listener = await ChannelListener(redis, session_id).__aenter__()
        listeners.append(listener)
        return listener

    yield start
    for listener in listeners:
        await listener.__aexit__()


# -- approve / reject: 200 (CONTRACT §4.4) ---------------------------------------------------------


async def test_s4_4_approve_200_updates_record_sets_signal_and_publishes(
    client: httpx.AsyncClient, redis: Redis, listen: Listen
) -> None:
    request_id, session_id, original = await put_request(redis, ttl=100)
    listener = await listen(session_id)
    before_ms = int(time.time() * 1000)
    response = await approve(client, request_id, body={"userId": "1"})
    after_ms = int(time.time() * 1000)

    data = assert_success(response, 200, APPROVED_MESSAGE)
    assert data == {"requestId": request_id, "sessionId": session_id, "status": "approved"}

    record = await stored(redis, request_id)
    assert record["status"] == "approved"
    assert record["approvedBy"] == "1"
    assert isinstance(record["approvedAt"], int) and before_ms <= record["approvedAt"] <= after_ms
    assert {k: v for k, v in record.items() if k not in {"status", "approvedBy", "approvedAt"}} == {
        k: v for k, v in original.items() if k != "status"
    }  # main-service preserves unknown fields (§4.2)
    assert 1790 <= await redis.ttl(f"hitl:request:{request_id}") <= 1800  # TTL reset to 30 min

    signal = await stored_signal(redis, session_id)
    assert 290 <= await redis.ttl(f"hitl:signal:{session_id}") <= 300
    assert set(signal) == {"type", "requestId", "status", "timestamp"}
    assert signal["type"] == "approval" and signal["requestId"] == request_id and signal["status"] == "approved"
    assert isinstance(signal["timestamp"], int) and before_ms // 1000 <= signal["timestamp"] <= after_ms // 1000 + 1

    published = await listener.messages(1)
    assert [json.loads(m) for m in published] == [signal]


async def test_the_recorded_approver_is_the_token_subject_and_a_body_naming_someone_else_is_refused(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    """Regression (hardening): Bob's approval with body {"userId":"the-ceo"} was recorded as the CEO's."""
    request_id, _, _ = await put_request(redis)
    refused = await approve(client, request_id, body={"userId": "the-ceo"})
    assert refused.status_code == 403 and refused.json()["errorCode"] == "E2001"
    assert (await stored(redis, request_id))["status"] == "pending"  # nothing written, nothing published
    assert_success(await approve(client, request_id, body={"userId": "1"}), 200, APPROVED_MESSAGE)
    assert (await stored(redis, request_id))["approvedBy"] == "1"  # the token's sub


@pytest.mark.parametrize("status", [["pending"], {"s": 1}, 7])
async def test_a_record_whose_status_is_not_text_is_corrupt_not_a_500(
    client: httpx.AsyncClient, redis: Redis, status: Any
) -> None:
    """Regression (hardening): a list as `status` made decide raise TypeError (500)."""
    request_id, _, _ = await put_request(redis, status=status)
    answer = await approve(client, request_id)
    assert answer.status_code == 400, answer.text
    assert answer.json()["errorCode"] == "E4000"
    assert answer.json()["message"] == "Stored approval request is malformed: its status is not a string"


async def test_s4_4_reject_200_default_reason_user_rejected(
    client: httpx.AsyncClient, redis: Redis, listen: Listen
) -> None:
    request_id, session_id, _ = await put_request(redis, ttl=100)
    listener = await listen(session_id)
    before_ms = int(time.time() * 1000)
    data = assert_success(await reject(client, request_id), 200, REJECTED_MESSAGE)
    assert data == {"requestId": request_id, "sessionId": session_id, "status": "rejected", "reason": "User rejected"}

    record = await stored(redis, request_id)
    assert record["status"] == "rejected" and record["rejectedBy"] == "1" and record["reason"] == "User rejected"
    assert before_ms <= record["rejectedAt"] <= int(time.time() * 1000)
    assert "approvedBy" not in record and "approvedAt" not in record
    assert 1790 <= await redis.ttl(f"hitl:request:{request_id}") <= 1800

    signal = await stored_signal(redis, session_id)
    assert set(signal) == {"type", "requestId", "status", "reason", "timestamp"}
    assert (signal["type"], signal["requestId"], signal["status"], signal["reason"]) == (
        "rejection", request_id, "rejected", "User rejected")
    assert 290 <= await redis.ttl(f"hitl:signal:{session_id}") <= 300
    assert [json.loads(m) for m in await listener.messages(1)] == [signal]


async def test_s4_4_reject_200_with_reason(client: httpx.AsyncClient, redis: Redis, listen: Listen) -> None:
    request_id, session_id, _ = await put_request(redis)
    listener = await listen(session_id)
    data = assert_success(await reject(client, request_id, body={"userId": "1", "reason": "Wrong recipient"}),
                          200, REJECTED_MESSAGE)
    assert data["reason"] == "Wrong recipient" and data["status"] == "rejected"
    assert (await stored(redis, request_id))["reason"] == "Wrong recipient"
    [published] = await listener.messages(1)
    assert json.loads(published)["reason"] == "Wrong recipient"


@pytest.mark.parametrize("status", ["expired", "PENDING", ..., None, "approving"], ids=repr)
async def test_s4_2_only_approved_and_rejected_are_terminal(
    client: httpx.AsyncClient, redis: Redis, status: Any
) -> None:
    request_id, _, _ = await put_request(redis, status=status)
    assert_success(await approve(client, request_id), 200, APPROVED_MESSAGE)
    assert (await stored(redis, request_id))["status"] == "approved"


# -- 409 idempotent (CONTRACT §4.4) -------------------------------------------------------------


@pytest.mark.parametrize(
    "first,second,current",
    [
        (approve, approve, "approved"),
        (approve, reject, "approved"),
        (reject, approve, "rejected"),
        (reject, reject, "rejected"),
    ],
    ids=["approve-approve", "approve-reject", "reject-approve", "reject-reject"],
)
async def test_s4_4_second_decision_is_409_success_envelope_without_write_or_publish(
    client: httpx.AsyncClient, redis: Redis, listen: Listen, first: Decide, second: Decide, current: str
) -> None:
    request_id, session_id, _ = await put_request(redis)
    listener = await listen(session_id)
    assert (await first(client, request_id)).status_code == 200
    assert len(await listener.messages(1)) == 1
    record_after_first = await redis.get(f"hitl:request:{request_id}")
    signal_after_first = await redis.get(f"hitl:signal:{session_id}")
    await redis.expire(f"hitl:request:{request_id}", 500)
    await redis.expire(f"hitl:signal:{session_id}", 100)

    data = assert_success(await second(client, request_id), 409, IDEMPOTENT_MESSAGE)
    assert data["requestId"] == request_id and data["sessionId"] == session_id and data["status"] == current

    assert await listener.messages() == []
    assert await redis.get(f"hitl:request:{request_id}") == record_after_first
    assert await redis.get(f"hitl:signal:{session_id}") == signal_after_first
    assert await redis.ttl(f"hitl:request:{request_id}") <= 500  # not reset: no Redis write on 409
    assert await redis.ttl(f"hitl:signal:{session_id}") <= 100


async def test_s4_4_reject_409_reports_the_stored_reason(client: httpx.AsyncClient, redis: Redis) -> None:
    request_id, _, _ = await put_request(redis)
    await reject(client, request_id, body={"userId": "1", "reason": "No"})
    data = assert_success(await reject(client, request_id, body={"userId": "1", "reason": "Other"}), 409,
                          IDEMPOTENT_MESSAGE)
    assert data["status"] == "rejected" and data["reason"] == "No"


@pytest.mark.parametrize("status", ["approved", "rejected"])
async def test_s4_4_record_already_terminal_in_redis_is_409(
    client: httpx.AsyncClient, redis: Redis, listen: Listen, status: Any
) -> None:
    request_id, session_id, _ = await put_request(redis, status=status)
    listener = await listen(session_id)
    data = assert_success(await approve(client, request_id), 409, IDEMPOTENT_MESSAGE)
    assert data["status"] == status
    assert await redis.get(f"hitl:signal:{session_id}") is None
    assert await listener.messages() == []


async def test_s4_4_concurrent_approvals_one_200_rest_409_exactly_one_publish(
    client: httpx.AsyncClient, redis: Redis, listen: Listen
) -> None:
    request_id, session_id, _ = await put_request(redis)
    listener = await listen(session_id)
    responses = await asyncio.gather(*(approve(client, request_id) for _ in range(10)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 9
    for r in responses:
        assert r.json()["data"]["status"] == "approved"
    assert len(await listener.messages(1, quiet_seconds=0.5)) == 1


async def test_s4_4_concurrent_approve_and_reject_decide_once(
    client: httpx.AsyncClient, redis: Redis, listen: Listen
) -> None:
    request_id, session_id, _ = await put_request(redis)
    listener = await listen(session_id)
    calls = [approve(client, request_id) if i % 2 else reject(client, request_id) for i in range(10)]
    responses = await asyncio.gather(*calls)
    assert sorted(r.status_code for r in responses) == [200] + [409] * 9
    winner = next(r for r in responses if r.status_code == 200).json()["data"]["status"]
    assert {r.json()["data"]["status"] for r in responses} == {winner}
    [published] = await listener.messages(1, quiet_seconds=0.5)
    assert json.loads(published)["status"] == winner == (await stored(redis, request_id))["status"]


# -- 404 / 403 E2007 (CONTRACT §2.4) ------------------------------------------------------------


async def test_s2_4_unknown_request_is_404_e1004(client: httpx.AsyncClient) -> None:
    assert_error(await approve(client, "req_does_not_exist"), 404, "E1004")
    assert_error(await reject(client, "req_does_not_exist"), 404, "E1004")


@pytest.mark.parametrize("stored_tenant", [2, "2", "+2"], ids=repr)
async def test_s2_4_stored_numeric_tenant_differs_is_403_e2007(
    client: httpx.AsyncClient, redis: Redis, listen: Listen, stored_tenant: Any
) -> None:
    request_id, session_id, _ = await put_request(redis, tenant=stored_tenant)
    listener = await listen(session_id)
    raw_before = await redis.get(f"hitl:request:{request_id}")
    assert_error(await approve(client, request_id), 403, "E2007")
    assert_error(await reject(client, request_id), 403, "E2007")
    assert await redis.get(f"hitl:request:{request_id}") == raw_before
    assert await redis.get(f"hitl:signal:{session_id}") is None
    assert await listener.messages() == []


@pytest.mark.parametrize("stored_tenant", [1, "1"], ids=repr)
async def test_s2_4_stored_tenant_written_as_text_or_as_a_number_matches_the_same_tenant(
    client: httpx.AsyncClient, redis: Redis, stored_tenant: Any
) -> None:
    request_id, _, _ = await put_request(redis, tenant=stored_tenant)
    assert_success(await approve(client, request_id), 200, APPROVED_MESSAGE)


@pytest.mark.parametrize(
    "stored_tenant", ["tenant9", ..., None, "", "1.0", "--2", "+-2", "+1", "01", ["1"], True], ids=repr
)
async def test_a_stored_tenant_that_is_not_exactly_the_approvers_is_refused_where_main_service_skips_the_check(
    client: httpx.AsyncClient, redis: Redis, stored_tenant: Any
) -> None:
    """Regression (hardening): main-service skips the E2007 check for a tenantId that does not parse as
    a Long (§4.2), and 1 approved "01"'s and "+1"'s requests; Aura compares exactly and fails closed."""
    request_id, _, _ = await put_request(redis, tenant=stored_tenant)
    assert_error(await approve(client, request_id), 403, "E2007")
    assert (await stored(redis, request_id))["status"] == "pending"


async def test_s2_4_stored_record_without_session_id_is_500_e1000_like_main_service(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    request_id, _, _ = await put_request(redis, sessionId=...)
    assert_error(await approve(client, request_id), 500, "E1000")
    assert (await stored(redis, request_id))["status"] == "pending"


# -- interceptor checks (CONTRACT §2.4) ---------------------------------------------------------


async def assert_untouched(redis: Redis, request_id: str, session_id: str) -> None:
    assert (await stored(redis, request_id))["status"] == "pending"
    assert await redis.get(f"hitl:signal:{session_id}") is None


def without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


@pytest.mark.parametrize(
    "headers,status,code,message",
    [
        (without(approver_headers(), "Authorization"), 401, "E2000", None),
        ({**approver_headers(), "Authorization": "Basic eHg6eXk="}, 401, "E2000", None),
        ({**approver_headers(), "Authorization": f"Bearer {make_token(lifetime=-120)}"}, 401, "E2002", None),
        ({**approver_headers(), "Authorization": "Bearer garbage"}, 401, "E2003", None),
        ({**approver_headers(), "Authorization": f"Bearer {make_token('1', None)}"}, 401, "E2003", None),
        (without(approver_headers(), "X-Tenant-ID"), 401, "E2000", "X-Tenant-ID header is required"),
        ({**approver_headers(), "X-Tenant-ID": "2"}, 403, "E2001", "Tenant ID mismatch"),
        (without(approver_headers(), "X-User-ID"), 401, "E2000", "X-User-ID header is required"),
        ({**approver_headers(), "X-User-ID": "2"}, 403, "E2001", "User ID mismatch"),
        (approver_headers("1", "tenant1"), 400, "E1001", None),
    ],
    ids=[
        "no-authorization", "basic", "expired", "garbage-token", "no-tenant-claim", "no-tenant-header",
        "tenant-mismatch", "no-user-header", "user-mismatch", "non-numeric-tenant",
    ],
)
async def test_s2_4_approver_checks(
    client: httpx.AsyncClient, redis: Redis, headers: dict[str, str], status: Any, code: str, message: str | None
) -> None:
    request_id, session_id, _ = await put_request(redis)
    assert_error(await approve(client, request_id, headers=headers), status, code, message)
    assert_error(await reject(client, request_id, headers=headers), status, code, message)
    await assert_untouched(redis, request_id, session_id)


async def test_s2_4_auth_is_checked_before_the_request_exists(client: httpx.AsyncClient) -> None:
    headers = without(approver_headers(), "Authorization")
    assert_error(await approve(client, "req_does_not_exist", headers=headers), 401, "E2000")


async def test_s2_6_error_envelope_echoes_trace_headers(client: httpx.AsyncClient) -> None:
    headers = {**without(approver_headers(), "Authorization"), "X-Trace-Id": "t-9", "X-Gateway-Request-Id": "g-9"}
    body = (await approve(client, "req_x", headers=headers)).json()
    assert body["traceId"] == "t-9" and body["gatewayRequestId"] == "g-9"


@pytest.mark.parametrize("body", [{}, {"userId": ""}, {"userId": "   "}, {"userId": None}, {"reason": "x"}],
                         ids=repr)
async def test_s2_4_blank_user_id_in_body_is_400_e4000(client: httpx.AsyncClient, redis: Redis, body: Any) -> None:
    request_id, session_id, _ = await put_request(redis)
    assert_error(await approve(client, request_id, body=body), 400, "E4000")
    assert_error(await reject(client, request_id, body=body), 400, "E4000")
    await assert_untouched(redis, request_id, session_id)


async def test_s2_4_body_that_is_not_json_is_a_4xx(client: httpx.AsyncClient, redis: Redis) -> None:
    request_id, session_id, _ = await put_request(redis)
    for content in (b"", b"{", b"[1]"):
        response = await client.post(f"/aura/hitl/approve/{request_id}", content=content,
                                     headers={**approver_headers(), "Content-Type": "application/json"})
        let_server_log_its_crash(response)
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["success"] is False
    await assert_untouched(redis, request_id, session_id)


# -- GET /aura/hitl/requests/{id} (CONTRACT §4.4; issue 10 item 6: a token and the tenant) -----------


async def read_request(client: httpx.AsyncClient, request_id: str, headers: dict[str, str] | None = None
                       ) -> httpx.Response:
    return await client.get(f"/aura/hitl/requests/{request_id}",
                            headers=approver_headers() if headers is None else headers)


async def read_signal(client: httpx.AsyncClient, session_id: str, headers: dict[str, str] | None = None
                      ) -> httpx.Response:
    return await client.get(f"/aura/hitl/signals/{session_id}",
                            headers=approver_headers() if headers is None else headers)


async def test_s4_4_get_request_returns_the_stored_json_as_a_string(client: httpx.AsyncClient, redis: Redis) -> None:
    request_id, _, record = await put_request(redis)
    data = assert_success(await read_request(client, request_id), 200, "Approval request retrieved")
    assert isinstance(data, str)
    assert data == await redis.get(f"hitl:request:{request_id}")
    assert json.loads(data) == record


READ_CHECKS = [
    ({"X-Tenant-ID": "1"}, 401, "E2000", "Authorization header is required"),  # what sufficed before issue 10
    ({}, 401, "E2000", None),
    ({**approver_headers(), "Authorization": f"Bearer {make_token(lifetime=-120)}"}, 401, "E2002", None),
    ({**approver_headers(), "Authorization": "Bearer garbage"}, 401, "E2003", None),
    (without(approver_headers(), "X-Tenant-ID"), 401, "E2000", "X-Tenant-ID header is required"),
    ({**approver_headers(), "X-Tenant-ID": "2"}, 403, "E2001", "Tenant ID mismatch"),
    (without(approver_headers(), "X-User-ID"), 401, "E2000", "X-User-ID header is required"),
    ({**approver_headers(), "X-User-ID": "2"}, 403, "E2001", "User ID mismatch"),
]
READ_CHECK_IDS = ["tenant-header-only", "nothing", "expired", "garbage-token", "no-tenant-header",
                  "tenant-mismatch", "no-user-header", "user-mismatch"]


@pytest.mark.parametrize("headers,status,code,message", READ_CHECKS, ids=READ_CHECK_IDS)
async def test_reading_an_approval_request_needs_a_token(
    client: httpx.AsyncClient, redis: Redis, headers: dict[str, str], status: int, code: str, message: str | None
) -> None:
    """Issue 10 item 6: X-Tenant-ID alone returned the whole record (recipient, subject, body). The read
    now authenticates as approve/reject do (CONTRACT §2.4), before Redis is asked anything."""
    request_id, _, _ = await put_request(redis)
    assert_error(await read_request(client, request_id, headers), status, code, message)
    assert_error(await read_request(client, "req_does_not_exist", headers), status, code, message)


@pytest.mark.parametrize("headers,status,code,message", READ_CHECKS, ids=READ_CHECK_IDS)
async def test_reading_a_sessions_signal_needs_a_token(
    client: httpx.AsyncClient, redis: Redis, headers: dict[str, str], status: int, code: str, message: str | None
) -> None:
    """Issue 10 item 6: session ids are in every SSE ``id:`` line, so the signal read authenticates too."""
    request_id, session_id, _ = await put_request(redis)
    assert_success(await approve(client, request_id), 200, APPROVED_MESSAGE)
    assert_error(await read_signal(client, session_id, headers), status, code, message)


async def test_s4_4_get_unknown_request_is_404_e1004(client: httpx.AsyncClient) -> None:
    assert_error(await read_request(client, "req_nope"), 404, "E1004")


@pytest.mark.parametrize("stored_tenant", ["2", 2, "01", "+1", " 1", None, ..., "", ["1"], True, {"id": "1"}],
                         ids=repr)
async def test_another_tenants_request_is_404(client: httpx.AsyncClient, redis: Redis, stored_tenant: Any) -> None:
    """The stored tenantId must be the caller's X-Tenant-ID exactly, as decide() compares it (DECISIONS
    40, fail closed); anything else is the 404 of an unknown id, which says nothing about other tenants."""
    request_id, _, _ = await put_request(redis, tenant=stored_tenant)
    unknown = await read_request(client, "req_does_not_exist")
    other = await read_request(client, request_id)
    assert_error(other, 404, "E1004")
    assert {k: v for k, v in other.json().items() if k not in ("timestamp", "message")} == {
        k: v for k, v in unknown.json().items() if k not in ("timestamp", "message")}


async def test_any_user_of_the_requests_tenant_may_read_it(client: httpx.AsyncClient, redis: Redis) -> None:
    """DECISIONS 41: any authenticated user of the tenant may decide the request, so may see what they decide."""
    request_id, _, _ = await put_request(redis, tenant="2")
    for sub in ("1", "someone-else"):
        assert_success(await read_request(client, request_id, approver_headers(sub, "2")), 200,
                       "Approval request retrieved")
    request_id, _, _ = await put_request(redis, tenant=1)  # a JSON number, as in Java's fixtures
    assert_success(await read_request(client, request_id), 200, "Approval request retrieved")


@pytest.mark.parametrize("raw", ["not json", "[1]", '"x"', "[" * 100_000 + "]" * 100_000])
async def test_a_corrupt_request_record_reads_as_unknown_not_a_500(
    client: httpx.AsyncClient, redis: Redis, raw: str
) -> None:
    request_id = f"req_{uuid.uuid4().hex[:12]}"
    await redis.set(f"hitl:request:{request_id}", raw, ex=60)
    assert_error(await read_request(client, request_id), 404, "E1004")


async def test_s4_4_get_request_reflects_a_decision(client: httpx.AsyncClient, redis: Redis) -> None:
    request_id, _, _ = await put_request(redis)
    await approve(client, request_id)
    data = assert_success(await read_request(client, request_id), 200, "Approval request retrieved")
    assert json.loads(data)["status"] == "approved"


# -- GET /aura/hitl/signals/{sessionId} (CONTRACT §4.3) -----------------------------------------


async def test_s4_3_get_signal_after_approve_returns_it_as_a_string(client: httpx.AsyncClient, redis: Redis) -> None:
    request_id, session_id, _ = await put_request(redis)
    await approve(client, request_id)
    data = assert_success(await read_signal(client, session_id), 200, "Signal retrieved")
    assert isinstance(data, str) and data == await redis.get(f"hitl:signal:{session_id}")
    assert json.loads(data)["requestId"] == request_id


async def test_s4_3_get_signal_written_by_main_service_is_returned_verbatim(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    request_id, session_id, _ = await put_request(redis)
    raw = f'{{"timestamp":1706152860,"status":"approved","requestId":"{request_id}","type":"approval"}}'
    await redis.set(f"hitl:signal:{session_id}", raw, ex=300)
    data = assert_success(await read_signal(client, session_id), 200, "Signal retrieved")
    assert data == raw


async def test_s4_3_no_signal_is_200_without_data_key(client: httpx.AsyncClient, redis: Redis) -> None:
    assert assert_success(await read_signal(client, "session_none"), 200, "No signal found for session",
                          has_data=False) is None
    _, session_id, _ = await put_request(redis)  # a request, not decided yet
    assert_success(await read_signal(client, session_id), 200, "No signal found for session", has_data=False)


async def test_s4_3_another_tenants_signal_is_not_disclosed(client: httpx.AsyncClient, redis: Redis) -> None:
    request_id, session_id, _ = await put_request(redis, tenant="2")
    assert_success(await approve(client, request_id, headers=approver_headers("1", "2")), 200, APPROVED_MESSAGE)
    assert_success(await read_signal(client, session_id), 200, "No signal found for session", has_data=False)
    assert_success(await read_signal(client, session_id, approver_headers("1", "2")), 200, "Signal retrieved")


async def test_a_signal_whose_session_has_no_request_record_is_not_disclosed(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    """The signal names no tenant (CONTRACT §4.3); without the session's request record its tenant
    cannot be told, so the answer is the one for no signal rather than somebody's decision."""
    request_id, session_id, _ = await put_request(redis)
    assert_success(await approve(client, request_id), 200, APPROVED_MESSAGE)
    await redis.delete(f"hitl:request:{request_id}")
    assert_success(await read_signal(client, session_id), 200, "No signal found for session", has_data=False)
    await redis.set(f"hitl:session:{session_id}", "req_gone_elsewhere")
    assert_success(await read_signal(client, session_id), 200, "No signal found for session", has_data=False)
