"""Hostile or odd input gets a 4xx ApiResponse envelope, never a 5xx or a traceback.

Against the real uvicorn and redis-server: lone surrogates, a BOM, a flooded or deep
``context``, oversized bodies without a Content-Type, malformed session ids, and a
client that hangs up in the middle of its body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from aura.storage import keys
from tests.support.auth import auth_headers
from tests.support.envelopes import assert_error_envelope
from tests.support.live_server import LiveServer, let_server_log_its_crash

pytestmark = pytest.mark.anyio

PATH = "/aura/test/stream"
MAX_CONTEXT_KEYS = 1_000
MAX_CONTEXT_DEPTH = 32


async def post_raw(
    client: httpx.AsyncClient, content: bytes, *, content_type: str | None = "application/json"
) -> httpx.Response:
    headers = {"Accept": "text/event-stream", **auth_headers()}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return await client.post(PATH, content=content, headers=headers)


async def assert_accepted(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    """200 SSE: the stream opened (read no further; the shared server runs the session to its end)."""
    headers = {"Accept": "text/event-stream", "Content-Type": "application/json", **auth_headers()}
    async with client.stream("POST", PATH, content=json.dumps(body).encode(), headers=headers) as response:
        if response.status_code != 200:
            text = (await response.aread()).decode()
            let_server_log_its_crash(response)
            pytest.fail(f"{response.status_code}: {text}")
        assert response.headers["content-type"].startswith("text/event-stream")


def nested(depth: int) -> dict[str, Any]:
    """A context ``depth`` levels deep: the context object is level 1."""
    context: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        context = {"a": context}
    return context


# -- 1. text that is JSON but not Unicode, a BOM, a flooded or deep context ---------------------


@pytest.mark.parametrize(
    "content",
    [
        b'{"prompt":"\\ud800","context":{}}',  # a lone high surrogate as the prompt
        b'{"prompt":"hi \\udc00 there"}',  # a lone low surrogate inside it
        b'{"prompt":"hi","context":{"a":"\\ud800"}}',  # in a context value
        b'{"prompt":"hi","context":{"\\udfff":1}}',  # in a context key
        b'{"prompt":"hi","context":{"a":["x","\\ud83d"]}}',  # half an emoji, in an array
    ],
)
async def test_a_lone_surrogate_escape_is_400_e4002_not_5xx(client: httpx.AsyncClient, content: bytes) -> None:
    """Regression: the prompt's surrogate reached Redis (503 UnicodeEncodeError), the context's 500ed."""
    envelope = assert_error_envelope(await post_raw(client, content), 400, "E4002")
    assert "surrogate" in envelope["message"]


async def test_a_paired_surrogate_escape_is_accepted(client: httpx.AsyncClient) -> None:
    """``\\ud83d\\ude00`` is one character (😀), not a lone surrogate."""
    await assert_accepted(client, json.loads('{"prompt":"smile \\ud83d\\ude00","context":{"e":"\\ud83d\\ude00"}}'))


async def test_surrogate_code_points_encoded_as_utf8_bytes_are_400_e4002(client: httpx.AsyncClient) -> None:
    """Regression: ED A0 80 (U+D800 "encoded" as UTF-8) is not UTF-8; json.loads(bytes) let it through (503)."""
    envelope = assert_error_envelope(await post_raw(client, b'{"prompt":"\xed\xa0\x80"}'), 400, "E4002")
    assert envelope["message"] == "Request body is not valid UTF-8"


async def test_a_body_starting_with_a_utf8_bom_is_400_e4002(client: httpx.AsyncClient) -> None:
    """RFC 8259 §8.1: senders must not add a BOM; Aura refuses one instead of guessing (it was a 200)."""
    response = await post_raw(client, b'\xef\xbb\xbf{"prompt":"hello","context":{}}')
    envelope = assert_error_envelope(response, 400, "E4002")
    assert "byte order mark" in envelope["message"]


async def test_a_utf16_body_is_400_e4002(client: httpx.AsyncClient) -> None:
    """JSON between systems is UTF-8 (RFC 8259 §8.1): UTF-16 is not guessed at (it was a 200)."""
    content = '{"prompt":"hello"}'.encode("utf-16-le")
    assert_error_envelope(await post_raw(client, content), 400, "E4002")


async def test_a_context_of_1658_keys_is_400_e4000(client: httpx.AsyncClient) -> None:
    body = {"prompt": "hello", "context": {f"k{i}": i for i in range(1658)}}
    envelope = assert_error_envelope(await post_raw(client, json.dumps(body).encode()), 400, "E4000")
    assert envelope["message"] == f"context has 1658 keys; at most {MAX_CONTEXT_KEYS} are allowed"


async def test_a_context_of_exactly_the_key_limit_is_accepted(client: httpx.AsyncClient) -> None:
    await assert_accepted(client, {"prompt": "hello", "context": {f"k{i}": i for i in range(MAX_CONTEXT_KEYS)}})


async def test_a_context_nested_one_level_too_deep_is_400_e4000(client: httpx.AsyncClient) -> None:
    body = {"prompt": "hello", "context": nested(MAX_CONTEXT_DEPTH + 1)}
    envelope = assert_error_envelope(await post_raw(client, json.dumps(body).encode()), 400, "E4000")
    assert envelope["message"] == f"context is nested more than {MAX_CONTEXT_DEPTH} levels deep"


async def test_a_context_nested_deep_through_arrays_is_400_e4000(client: httpx.AsyncClient) -> None:
    deep: Any = 1
    for _ in range(MAX_CONTEXT_DEPTH):
        deep = [deep]
    body = {"prompt": "hello", "context": {"a": deep}}  # 1 object + 32 arrays = 33 levels
    assert_error_envelope(await post_raw(client, json.dumps(body).encode()), 400, "E4000")


async def test_a_context_of_exactly_the_depth_limit_is_accepted(client: httpx.AsyncClient) -> None:
    await assert_accepted(client, {"prompt": "hello", "context": nested(MAX_CONTEXT_DEPTH)})


# -- 2. too large, at any size and without a Content-Type: still the envelope -------------------


async def test_a_722_kb_body_without_content_type_is_a_413_envelope(client: httpx.AsyncClient) -> None:
    response = await post_raw(client, b"x" * (722 * 1024), content_type=None)
    assert "content-type" not in response.request.headers
    assert_error_envelope(response, 413, "E4000", "Request body exceeds 524288 bytes")


async def test_a_722_kb_chunked_body_without_content_type_is_a_413_envelope(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(722 // 2):
            yield b"x" * 2048

    response = await client.post(PATH, content=chunks(), headers={"Accept": "text/event-stream", **auth_headers()})
    assert "content-length" not in response.request.headers and "content-type" not in response.request.headers
    assert_error_envelope(response, 413, "E4000", "Request body exceeds 524288 bytes")


# -- 3. session ids that Aura cannot have issued never reach Redis -----------------------------


@pytest.fixture
async def booby_trapped_id(redis: Redis) -> AsyncIterator[str]:
    """A malformed session id whose snapshot key holds a string: any Redis read of it is WRONGTYPE."""
    session_id = f"sess_{secrets.token_hex(12)}:events"
    await redis.set(keys.snapshot(session_id), "not a hash")
    yield session_id
    await redis.delete(keys.snapshot(session_id))


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("GET", "/events"), ("POST", "/cancel")])
async def test_a_session_id_with_a_colon_suffix_is_404_e1004_without_touching_redis(
    client: httpx.AsyncClient, booby_trapped_id: str, method: str, suffix: str
) -> None:
    """Regression: ``sess_…:events`` went to Redis, whose WRONGTYPE answer became a 503."""
    response = await client.request(method, f"/aura/sessions/{booby_trapped_id}{suffix}", headers=auth_headers())
    assert_error_envelope(response, 404, "E1004", f"Session not found: {booby_trapped_id}")


@pytest.mark.parametrize(
    "session_id",
    ["abc", "sess_", "sess_0123456789ABCDEF01234567", "sess_0123456789abcdef0123456", "sess_0123456789abcdef012345678"],
)
async def test_a_session_id_not_of_auras_format_is_404_e1004(client: httpx.AsyncClient, session_id: str) -> None:
    response = await client.get(f"/aura/sessions/{session_id}/events", headers=auth_headers())
    assert_error_envelope(response, 404, "E1004", f"Session not found: {session_id}")


# -- 4. a client that hangs up mid-body ----------------------------------------------------------


async def test_a_client_that_disconnects_mid_body_causes_no_500_or_traceback(
    aura: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: ClientDisconnect from the body read was logged as an unhandled error and answered 500."""
    caplog.set_level(logging.INFO, logger="aura.http.app")
    head = [f"POST {PATH} HTTP/1.1", f"Host: 127.0.0.1:{aura.port}", "Content-Type: application/json",
            "Content-Length: 1000", *(f"{name}: {value}" for name, value in auth_headers().items())]
    reader, writer = await asyncio.open_connection("127.0.0.1", aura.port)
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + b'{"prompt":"hel')
    await writer.drain()
    await asyncio.sleep(0.1)  # the handler is waiting for the rest of the body
    writer.close()
    await writer.wait_closed()

    def from_the_app() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "aura.http.app"]

    async with asyncio.timeout(5):
        while not from_the_app():
            await asyncio.sleep(0.02)
    records = from_the_app()
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.INFO, f"client disconnected before the request body of POST {PATH} was complete")
    ], [r.getMessage() for r in records]
    assert all(r.exc_info is None for r in records)
