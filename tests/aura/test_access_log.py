"""The access log of a real ``aura serve``: every request, never a query string (a prompt travels in one)."""

from __future__ import annotations

import logging

import httpx
import pytest

from aura.http.access_log import WithoutQueryStrings
from tests.conftest import open_stream
from tests.support.auth import auth_headers
from tests.support.process_server import AuraProcess

PROMPT_SECRET = "prompt-text-7f3a9c"  # what must never reach the log
TOKEN_SECRET = "query-token-51be02"


@pytest.mark.anyio
@pytest.mark.e2e  # `aura serve` as a real subprocess
async def test_the_access_log_has_the_path_of_a_legacy_get_stream_but_not_its_prompt() -> None:
    server = AuraProcess(None, AURA_LOG_LEVEL="info").start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            params = {"prompt": f"Hello, {PROMPT_SECRET}"}
            async with open_stream(client, method="GET", params=params, headers=auth_headers()) as stream:
                frames = await stream.rest()
            assert frames[-1].is_done
            assert (await client.get("/health", params={"token": TOKEN_SECRET})).status_code == 200
            assert (await client.get(f"/nope?{PROMPT_SECRET}")).status_code == 404
    finally:
        server.terminate()
        stderr = server.wait(timeout=15)
    assert '"GET /aura/test/stream HTTP/1.1" 200' in stderr, stderr
    assert '"GET /health HTTP/1.1" 200' in stderr, stderr
    assert '"GET /nope HTTP/1.1" 404' in stderr, stderr
    assert PROMPT_SECRET not in stderr and TOKEN_SECRET not in stderr, stderr


def test_the_filter_cuts_every_string_argument_at_its_query_and_leaves_the_rest() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/aura/test/stream?prompt=x&y=z", "1.1", 200), None)
    assert WithoutQueryStrings().filter(record) is True
    assert record.getMessage() == '127.0.0.1:5000 - "GET /aura/test/stream HTTP/1.1" 200'
    untouched = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "%s %d", ("/health", 200), None)
    WithoutQueryStrings().filter(untouched)
    assert untouched.args == ("/health", 200)
