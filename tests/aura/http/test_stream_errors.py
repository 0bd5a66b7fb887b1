"""Bad input on the stream gets its documented 4xx ApiResponse envelope, never a 5xx.

Against the real uvicorn and redis-server (CONTRACT §2.5-2.7, §3.1, §3.2).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from aura.config import StreamAuthPolicy
from tests.support.auth import (
    OTHER_SECRET,
    auth_headers,
    b64url,
    bearer,
    hand_token,
    make_token,
    now_claims,
    unsigned_token,
)
from tests.support.envelopes import assert_error_envelope
from tests.support.live_server import LiveServer, let_server_log_its_crash
from tests.support.redis_server import free_port
from tests.support.sse import Frame, SseStream

pytestmark = pytest.mark.anyio

PATH = "/aura/test/stream"
MAX_CONTEXT_BYTES = 256 * 1024
MAX_BODY_BYTES = 512 * 1024
MAX_PROMPT_CHARS = 32_000
SSE_HEADERS = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "x-accel-buffering": "no",
}
TRACE = {"X-Trace-Id": "trace-abc-123", "X-Gateway-Request-Id": "gw-req-456"}


# -- helpers -------------------------------------------------------------------------------------


async def post(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    *,
    body: Any = None,
    content: bytes | None = None,
) -> httpx.Response:
    if content is None and body is None:
        body = {"prompt": "hello", "context": {"activeApp": "mail"}}
    hdrs = {"Accept": "text/event-stream", "Content-Type": "application/json", **headers}
    if content is None:
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
    return await client.post(PATH, content=content, headers=hdrs)


async def assert_stream_accepted(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    *,
    content: bytes | None = None,
    method: str = "POST",
    params: dict[str, str] | None = None,
) -> list[Frame]:
    """The request is accepted: 200 SSE that runs the agent to [DONE] without an error event."""
    if content is None and method == "POST":
        content = json.dumps({"prompt": "hello", "context": {"activeApp": "mail"}}).encode()
    hdrs = {"Accept": "text/event-stream", "Content-Type": "application/json", **headers}
    async with client.stream(method, PATH, content=content, headers=hdrs, params=params) as response:
        if response.status_code != 200:
            body = (await response.aread()).decode()
            let_server_log_its_crash(response)
            raise AssertionError(f"{response.status_code}: {body}")
        assert {k: response.headers.get(k) for k in SSE_HEADERS} == SSE_HEADERS
        frames = await SseStream(response).rest(timeout=10)
    assert frames[-1].is_done
    assert frames[0].type == "thought"
    assert "error" not in [f.type for f in frames]
    return frames


# -- headers and tokens (CONTRACT §2.3-2.5) -----------------------------------------------------


async def test_s2_3_missing_tenant_header_is_400_e2006(client: httpx.AsyncClient) -> None:
    headers = auth_headers()
    del headers["X-Tenant-ID"]
    assert_error_envelope(await post(client, headers), 400, "E2006")


async def test_s2_3_blank_tenant_header_is_400_e2006(client: httpx.AsyncClient) -> None:
    assert_error_envelope(await post(client, {**auth_headers(), "X-Tenant-ID": ""}), 400, "E2006")


async def test_s2_6_error_envelope_echoes_trace_headers_only_when_sent(client: httpx.AsyncClient) -> None:
    headers = auth_headers()
    del headers["X-Tenant-ID"]
    body = assert_error_envelope(await post(client, {**headers, **TRACE}), 400, "E2006")
    assert body["traceId"] == "trace-abc-123" and body["gatewayRequestId"] == "gw-req-456"
    only_trace = assert_error_envelope(await post(client, {**headers, "X-Trace-Id": "t-1"}), 400, "E2006")
    assert "gatewayRequestId" not in only_trace and only_trace["traceId"] == "t-1"
    bare = assert_error_envelope(await post(client, headers), 400, "E2006")
    assert "traceId" not in bare and "gatewayRequestId" not in bare and "data" not in bare


async def test_s2_5_missing_authorization_strict_default_is_401_e2000(client: httpx.AsyncClient) -> None:
    assert_error_envelope(await post(client, {"X-Tenant-ID": "1", **TRACE}), 401, "E2000")


async def test_s2_5_basic_authorization_is_401_e2000(client: httpx.AsyncClient) -> None:
    assert_error_envelope(await post(client, {"X-Tenant-ID": "1", "Authorization": "Basic eHh4Onl5eQ=="}), 401, "E2000")


async def test_s2_5_bearer_without_token_is_401_e2000(client: httpx.AsyncClient) -> None:
    assert_error_envelope(await post(client, {"X-Tenant-ID": "1", "Authorization": "Bearer"}), 401, "E2000")


async def test_s2_4_expired_token_is_401_e2002(client: httpx.AsyncClient) -> None:
    assert_error_envelope(await post(client, bearer(make_token(lifetime=-120), **TRACE)), 401, "E2002")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("a.b.c", id="three-garbage-segments"),
        pytest.param(make_token(secret=OTHER_SECRET), id="other-secret"),
        pytest.param(unsigned_token("none"), id="alg-none"),
        pytest.param(hand_token(now_claims(), {"alg": "HS512", "typ": "JWT"}, digest=hashlib.sha512), id="hs512"),
        pytest.param(hand_token(now_claims(), {"alg": "RS256"}), id="rs256-confusion"),
        pytest.param(
            hand_token(now_claims(), {"alg": "HS256", "kid": "../../dev/null"}, secret="attacker-" * 5),
            id="kid-attacker-key",
        ),
        pytest.param(
            hand_token(
                now_claims(),
                {"alg": "HS256", "jwk": {"kty": "oct", "k": b64url(b"attacker-key-" * 3)}},
                secret="attacker-key-" * 3,
            ),
            id="embedded-jwk-attacker-key",
        ),
        pytest.param(hand_token(now_claims(), {"alg": ["HS256"]}), id="alg-list"),
        pytest.param(hand_token(now_claims(), {"alg": None}), id="alg-null"),
        pytest.param(hand_token(now_claims(), ["HS256"]), id="header-array"),
        pytest.param(hand_token(now_claims(exp=...)), id="no-exp"),
        pytest.param(make_token("1", None), id="no-tenant-claim"),
        pytest.param(hand_token(now_claims(sub=...)), id="no-sub"),
        pytest.param(hand_token(now_claims(tenant_id=True)), id="boolean-tenant"),
        pytest.param(hand_token(now_claims(exp="tomorrow")), id="exp-text"),
    ],
)
async def test_s2_4_invalid_tokens_are_401_e2003(client: httpx.AsyncClient, token: str) -> None:
    assert_error_envelope(await post(client, bearer(token)), 401, "E2003")


@pytest.mark.parametrize(
    "overrides", [{"exp": None}, {"exp": [1]}, {"iat": None}], ids=lambda o: json.dumps(o)
)
async def test_s2_4_ill_typed_time_claims_are_401_e2003_never_500(
    client: httpx.AsyncClient, overrides: dict[str, Any]
) -> None:
    """A correctly signed token whose exp/iat is not a number must not crash python-jose into a 500."""
    assert_error_envelope(await post(client, bearer(hand_token(now_claims(**overrides)))), 401, "E2003")


async def test_s2_4_tenant_header_not_matching_claim_is_403_e2001(client: httpx.AsyncClient) -> None:
    headers = bearer(make_token("1", "1"), tenant="2", **TRACE)
    assert_error_envelope(await post(client, headers), 403, "E2001", "Tenant ID mismatch")


async def test_s2_4_user_header_not_matching_sub_is_403_e2001(client: httpx.AsyncClient) -> None:
    headers = bearer(make_token("1", "1"), **{"X-User-ID": "2"})
    assert_error_envelope(await post(client, headers), 403, "E2001", "User ID mismatch")


async def test_s2_2_numeric_tenant_claim_with_digit_header_is_accepted(client: httpx.AsyncClient) -> None:
    await assert_stream_accepted(client, bearer(make_token("1", 1), "1"))


async def test_s2_2_non_numeric_tenant1_is_accepted_directly(client: httpx.AsyncClient) -> None:
    await assert_stream_accepted(client, bearer(make_token("backend_user_001", "tenant1"), "tenant1"))


async def test_s2_2_auth_server_shaped_token_is_accepted(client: httpx.AsyncClient) -> None:
    """Header {"alg":"HS256"} without typ, sub/tenant_id "1", int iat/exp, HMAC made by hand."""
    token = hand_token(now_claims(), {"alg": "HS256"})
    await assert_stream_accepted(client, bearer(token, "1", **{"X-User-ID": "1", "X-Agent-ID": "agent_session_1_x"}))


async def test_s2_3_matching_user_header_is_accepted(client: httpx.AsyncClient) -> None:
    await assert_stream_accepted(client, bearer(make_token("1", "1"), **{"X-User-ID": "1"}))


# -- body (CONTRACT §3.1) ------------------------------------------------------------------------


async def test_s3_1_invalid_json_body_is_400_e4002(client: httpx.AsyncClient) -> None:
    assert_error_envelope(await post(client, auth_headers(), content=b'{"prompt": "hi",'), 400, "E4002")


async def test_s3_1_non_utf8_body_is_400_e4002(client: httpx.AsyncClient) -> None:
    assert_error_envelope(await post(client, auth_headers(), content=b'{"prompt":"\xff\xfe"}'), 400, "E4002")


@pytest.mark.parametrize("content", [b'["prompt","hi"]', b'"hi"', b"42", b"null", b"true"])
async def test_s3_1_body_not_an_object_is_400_e4002(client: httpx.AsyncClient, content: bytes) -> None:
    assert_error_envelope(await post(client, auth_headers(), content=content), 400, "E4002")


async def test_s3_1_deeply_nested_json_is_a_4xx_not_500(client: httpx.AsyncClient) -> None:
    """100 000 nested arrays (200 KB) make json.loads raise RecursionError; still bad input, not 500."""
    depth = 100_000
    content = b'{"prompt":"hi","context":{"a":' + b"[" * depth + b"]" * depth + b"}}"
    assert_error_envelope(await post(client, auth_headers(), content=content), 400, "E4002")


@pytest.mark.parametrize("content", [b"", b"   ", b"\n"])
async def test_s3_1_empty_body_is_400_e4001(client: httpx.AsyncClient, content: bytes) -> None:
    assert_error_envelope(await post(client, auth_headers(), content=content), 400, "E4001")


@pytest.mark.parametrize("body", [{}, {"context": {}}, {"prompt": None}, {"message": "hi"}])
async def test_s3_1_missing_prompt_is_400_e4001(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    assert_error_envelope(await post(client, {**auth_headers(), **TRACE}, body=body), 400, "E4001")


@pytest.mark.parametrize("prompt", [42, ["hi"], {"text": "hi"}, True, "", "   ", "\n\t"])
async def test_s3_1_prompt_not_a_string_or_blank_is_400_e4000(client: httpx.AsyncClient, prompt: Any) -> None:
    assert_error_envelope(await post(client, auth_headers(), body={"prompt": prompt}), 400, "E4000")


@pytest.mark.parametrize("context", [[], "ctx", 1, True, [{"a": 1}]])
async def test_s3_1_context_not_an_object_is_400_e4000(client: httpx.AsyncClient, context: Any) -> None:
    assert_error_envelope(await post(client, auth_headers(), body={"prompt": "hi", "context": context}), 400, "E4000")


async def test_s3_1_context_is_optional(client: httpx.AsyncClient) -> None:
    await assert_stream_accepted(client, auth_headers(), content=b'{"prompt":"hello"}')
    await assert_stream_accepted(client, auth_headers(), content=b'{"prompt":"hello","context":null}')


def context_of_size(size: int, char: str = "x") -> dict[str, str]:
    """A context whose compact UTF-8 JSON is exactly ``size`` bytes (``{"a":"..."}`` is 8 bytes + payload)."""
    per_char = len(char.encode("utf-8"))
    payload = size - 8
    assert payload % per_char == 0
    context = {"a": char * (payload // per_char)}
    assert len(json.dumps(context, ensure_ascii=False, separators=(",", ":")).encode()) == size
    return context


async def test_s3_1_context_of_exactly_256_kb_is_accepted(client: httpx.AsyncClient) -> None:
    content = json.dumps({"prompt": "hello", "context": context_of_size(MAX_CONTEXT_BYTES)}).encode()
    await assert_stream_accepted(client, auth_headers(), content=content)


async def test_s3_1_context_one_byte_over_256_kb_is_413_e4000(client: httpx.AsyncClient) -> None:
    body = {"prompt": "hello", "context": context_of_size(MAX_CONTEXT_BYTES + 1)}
    envelope = assert_error_envelope(await post(client, {**auth_headers(), **TRACE}, body=body), 413, "E4000")
    assert "context" in envelope["message"]


async def test_s3_1_context_size_counts_utf8_bytes_not_characters(client: httpx.AsyncClient) -> None:
    # 87 380 Hangul syllables: 87 388 characters of JSON but 262 148 bytes of UTF-8.
    body = {"prompt": "hello", "context": context_of_size(MAX_CONTEXT_BYTES + 4, "한")}
    assert_error_envelope(await post(client, auth_headers(), body=body), 413, "E4000")


async def test_s3_1_body_over_512_kib_is_413(client: httpx.AsyncClient) -> None:
    content = json.dumps({"prompt": "hello", "context": {}, "pad": "x" * MAX_BODY_BYTES}).encode()
    assert_error_envelope(await post(client, auth_headers(), content=content), 413, "E4000")


async def test_s3_1_chunked_body_over_512_kib_without_content_length_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"prompt":"hello","pad":"'
        for _ in range(9):
            yield b"x" * 65536
        yield b'"}'

    hdrs = {"Accept": "text/event-stream", "Content-Type": "application/json", **auth_headers()}
    response = await client.post(PATH, content=chunks(), headers=hdrs)
    assert "content-length" not in response.request.headers
    assert_error_envelope(response, 413, "E4000")


async def test_s3_1_prompt_too_long_is_413_e4000_not_500(client: httpx.AsyncClient) -> None:
    response = await post(client, auth_headers(), body={"prompt": "x" * (MAX_PROMPT_CHARS + 1)})
    envelope = assert_error_envelope(response, 413, "E4000")
    assert "prompt" in envelope["message"] and str(MAX_PROMPT_CHARS) in envelope["message"]


async def test_s3_1_prompt_of_exactly_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    content = json.dumps({"prompt": "x" * MAX_PROMPT_CHARS}).encode()
    await assert_stream_accepted(client, auth_headers(), content=content)


async def test_s1_4_legacy_get_without_prompt_or_message_is_400_e4001(client: httpx.AsyncClient) -> None:
    hdrs = {"Accept": "text/event-stream", **auth_headers()}
    assert_error_envelope(await client.get(PATH, headers=hdrs), 400, "E4001")
    assert_error_envelope(await client.get(PATH, headers=hdrs, params={"other": "hi"}), 400, "E4001")


async def test_s1_4_legacy_get_with_blank_prompt_is_400_e4000(client: httpx.AsyncClient) -> None:
    hdrs = {"Accept": "text/event-stream", **auth_headers()}
    assert_error_envelope(await client.get(PATH, headers=hdrs, params={"prompt": "   "}), 400, "E4000")
    assert_error_envelope(await client.get(PATH, headers=hdrs, params={"message": ""}), 400, "E4000")


async def test_s1_4_legacy_get_still_requires_authorization(client: httpx.AsyncClient) -> None:
    hdrs = {"Accept": "text/event-stream", "X-Tenant-ID": "1"}
    assert_error_envelope(await client.get(PATH, headers=hdrs, params={"message": "hi"}), 401, "E2000")


# -- compat policy (CONTRACT §2.5) ---------------------------------------------------------------


async def test_s2_5_compat_missing_authorization_is_200_sse_with_one_error_event_and_no_session(
    start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(stream_auth=StreamAuthPolicy.COMPAT)
    before = server.runtime.counts()
    assert before == {"live": 0, "awaitingApproval": 0, "driven": 0, "started": 0}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        hdrs = {"Accept": "text/event-stream", "Content-Type": "application/json", "X-Tenant-ID": "1"}
        async with c.stream("POST", PATH, json={"prompt": "test"}, headers=hdrs) as response:
            assert response.status_code == 200
            assert {k: response.headers.get(k) for k in SSE_HEADERS} == SSE_HEADERS
            frames = await SseStream(response).rest(timeout=5)
        assert [f.type for f in frames[:-1]] == ["error"]
        assert frames[-1].raw == b"data: [DONE]"
        assert frames[0].body["code"] == "E2000"
    assert server.runtime.counts() == before


async def test_s2_5_compat_still_runs_nothing_for_the_legacy_get(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(stream_auth=StreamAuthPolicy.COMPAT)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        hdrs = {"Accept": "text/event-stream", "X-Tenant-ID": "1"}
        async with c.stream("GET", PATH, params={"message": "hi"}, headers=hdrs) as response:
            assert response.status_code == 200
            frames = await SseStream(response).rest(timeout=5)
    assert [f.type for f in frames] == ["error", None] and frames[0].body["code"] == "E2000"
    assert server.runtime.counts()["started"] == 0


async def test_s2_5_compat_invalid_or_expired_token_is_still_401(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(stream_auth=StreamAuthPolicy.COMPAT)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        assert_error_envelope(await post(c, bearer("garbage")), 401, "E2003")
        assert_error_envelope(await post(c, bearer(make_token(secret=OTHER_SECRET))), 401, "E2003")
        assert_error_envelope(await post(c, bearer(make_token(lifetime=-120))), 401, "E2002")
        assert_error_envelope(await post(c, {"X-Tenant-ID": "1", "Authorization": "Basic eHg6eXk="}), 401, "E2000")
        assert_error_envelope(await post(c, {}), 400, "E2006")
    assert server.runtime.counts()["started"] == 0


async def test_s2_5_compat_valid_token_runs_normally(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(stream_auth=StreamAuthPolicy.COMPAT)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        await assert_stream_accepted(c, auth_headers())
    assert server.runtime.counts()["started"] == 1


# -- routing -------------------------------------------------------------------------------------


async def test_s2_7_unknown_path_is_404_e1004_envelope(client: httpx.AsyncClient) -> None:
    assert_error_envelope(await client.get("/aura/nope", headers=TRACE), 404, "E1004")
    assert_error_envelope(await client.post("/api/aura/test/stream", headers=auth_headers()), 404, "E1004")


async def test_s2_7_wrong_method_is_405_e1002_envelope(client: httpx.AsyncClient) -> None:
    assert_error_envelope(await client.put(PATH, headers={**auth_headers(), **TRACE}, json={"prompt": "x"}), 405, "E1002")
    assert_error_envelope(await client.delete(PATH, headers=auth_headers()), 405, "E1002")
    assert_error_envelope(await client.get("/aura/hitl/approve/req_1", headers=auth_headers()), 405, "E1002")


async def test_wrong_method_405_carries_an_allow_header(client: httpx.AsyncClient) -> None:
    """RFC 9110 §15.5.6: a 405 response MUST carry Allow (Spring's does)."""
    response = await client.put(PATH, headers=auth_headers(), json={"prompt": "x"})
    assert response.status_code == 405
    assert {m.strip() for m in response.headers.get("allow", "").split(",")} >= {"GET", "POST"}


async def test_s1_gateway_host_and_forwarded_headers_are_accepted(client: httpx.AsyncClient) -> None:
    headers = {
        **auth_headers(),
        "Host": "dwp-gateway.internal.example:8080",
        "X-Forwarded-For": "203.0.113.7, 10.0.0.2",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "dwp.example.com",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Prefix": "/api",
        "X-Correlation-ID": "corr-1",
        "X-DWP-Source": "FRONTEND",
        "X-DWP-Caller-Type": "USER",
        "Accept-Language": "ko",
        "Last-Event-ID": "event_123",
    }
    await assert_stream_accepted(client, headers)


async def test_redis_down_new_stream_and_session_api_are_503_envelopes_not_500(
    start_server: Callable[..., LiveServer]
) -> None:
    """Regression: creating or resuming a session with Redis away raised a bare 500."""
    server = start_server(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_seconds=0.5)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
        created = await c.post("/aura/test/stream", headers=auth_headers(), json={"prompt": "hello"})
        resumed = await c.get("/aura/sessions/sess_000000000000000000000000", headers=auth_headers())
    for response in (created, resumed):
        assert_error_envelope(response, 503, "E5000")
