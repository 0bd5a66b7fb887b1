"""An unexpected exception inside a route is a 500 DWP envelope (E1000), never Starlette's bare text 500.

CONTRACT §2.6-2.7: every error response is an ApiResponse; main-service's
GlobalExceptionHandler answers anything unforeseen with E1000 "Internal server error".
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import httpx
import pytest

from aura.config import Settings
from aura.hitl.store import HitlStore
from aura.http import create_app
from aura.session.registry import SessionRegistry
from tests.support.auth import SECRET, approver_headers, auth_headers
from tests.support.envelopes import assert_error_envelope
from tests.support.live_server import LiveServer, let_server_log_its_crash

pytestmark = pytest.mark.anyio

STREAM_BODY = {"prompt": "hello", "context": {"activeApp": "mail"}}
TRACE = {"X-Trace-Id": "trace-boom-1", "X-Gateway-Request-Id": "gw-boom-1"}


def explode(*args: Any, **kwargs: Any) -> NoReturn:
    raise RuntimeError("injected: a bug in a route")


async def exploding(*args: Any, **kwargs: Any) -> NoReturn:
    explode()


def assert_internal_error(response: httpx.Response) -> dict[str, Any]:
    let_server_log_its_crash(response)  # the server logs the traceback: let it finish first
    body = assert_error_envelope(response, 500, "E1000", "Internal server error")
    assert "injected" not in response.text  # the exception's text is logged, not sent
    return body


@contextlib.asynccontextmanager
async def in_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app without a server or a lifespan; ``raise_app_exceptions=False`` lets the client see
    the response the app sent for an exception (Starlette re-raises it after sending)."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://aura.test") as client:
            yield client
    finally:
        services = app.state.runtime.services
        await services.http.aclose()
        await services.redis.aclose()


async def test_unexpected_error_in_the_stream_route_is_a_500_envelope_in_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No Redis, no server: the embedded backend and the app called directly."""
    monkeypatch.setattr(SessionRegistry, "create", exploding)
    async with in_process(Settings(jwt_secret=SECRET)) as client:
        response = await client.post("/aura/test/stream", json=STREAM_BODY,
                                     headers={"Accept": "text/event-stream", **auth_headers(), **TRACE})
    body = assert_internal_error(response)
    assert body["traceId"] == "trace-boom-1" and body["gatewayRequestId"] == "gw-boom-1"


async def test_unexpected_error_in_the_stream_route_is_a_500_envelope(
    monkeypatch: pytest.MonkeyPatch, start_server: Callable[..., LiveServer]
) -> None:
    """Through a real uvicorn: the route bound SessionRegistry.create when the app was built."""
    monkeypatch.setattr(SessionRegistry, "create", exploding)
    server = start_server()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post("/aura/test/stream", json=STREAM_BODY,
                                     headers={"Accept": "text/event-stream", **auth_headers(), **TRACE})
        assert_internal_error(response)
        # The server is fine afterwards: the next request is answered normally.
        assert (await client.get("/health")).status_code == 200


async def test_unexpected_error_in_the_approval_route_is_a_500_envelope(
    monkeypatch: pytest.MonkeyPatch, start_server: Callable[..., LiveServer]
) -> None:
    monkeypatch.setattr(HitlStore, "decide", exploding)
    server = start_server()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post("/aura/hitl/approve/req_whatever", json={"userId": "1"},
                                     headers=approver_headers())
    assert_internal_error(response)
